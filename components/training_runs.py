"""The runs list, read from disk on every refresh: status, progress and ETA, loss chart, log tail,
Stop / Resume / Delete and the equivalent command line. Refreshed by a fragment timer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from backend.training import registry, run_files, runner
from backend.training.errors import TrainingError
from backend.training.registry import RunInfo

ACTIVE_REFRESH_S = 2.0
IDLE_REFRESH_S = 15.0
BADGES = {"starting": "🟡", "running": "🟢", "stopping": "🟠", "completed": "✅",
          "failed": "❌", "stopped": "⏹️"}


def loss_frame(rows: list[dict]) -> pd.DataFrame:
    """Long table for the chart: step, loss, series (train / eval)."""
    records = []
    for row in rows:
        for key, series in (("loss", "train"), ("eval_loss", "eval")):
            if row.get(key) is not None:
                records.append({"step": row["step"], "loss": row[key], "series": series})
    return pd.DataFrame(records, columns=["step", "loss", "series"])


def render_loss_chart(run: RunInfo) -> None:
    frame = loss_frame(run.metrics)
    if frame.empty:
        st.caption("No loss yet.")
        return
    chart = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        x=alt.X("step:Q", title="step"),
        y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None),
        tooltip=["series", "step", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(height=220)
    st.altair_chart(chart, width="stretch")


def _stats_line(run: RunInfo) -> str:
    m = run.last_metrics
    parts = []
    if m.get("loss") is not None:
        parts.append(f"loss {m['loss']:.4f}")
    if m.get("lr") is not None:
        parts.append(f"lr {m['lr']:.2e}")
    if m.get("tokens_per_s"):
        parts.append(f"{m['tokens_per_s']:.0f} tokens/s")
    if m.get("gpu_peak_gib") is not None:
        parts.append(f"GPU peak {m['gpu_peak_gib']:.1f} GiB")
    if m.get("epoch") is not None:
        parts.append(f"epoch {m['epoch']:.2f}")
    return " · ".join(parts)


def _say(kind: str, text: str) -> None:
    st.session_state["train_runs_message"] = (kind, text)


def _on_stop(path: Path, force: bool = False) -> None:
    if runner.stop(path, force=force):
        _say("info", f"{'Killed' if force else 'Stopping'} {path.name}"
             + ("." if force else ": it saves a checkpoint after the current step."))
    else:
        _say("error", f"{path.name} is not running.")


def _on_resume(path: Path, key: str) -> None:
    until = st.session_state.get(f"until-{key}")
    try:
        runner.resume(path, "latest", max_steps=int(until) if until else None)
    except TrainingError as exc:
        _say("error", str(exc))
    else:
        _say("info", f"Resumed {path.name}.")


def _on_delete(path: Path, root: Path, key: str) -> None:
    st.session_state.pop(f"confirm-delete-{key}", None)
    try:
        runner.delete(path, root)
    except (TrainingError, OSError) as exc:
        _say("error", str(exc))
    else:
        _say("info", f"Deleted {path.name}.")


def _set(key: str, value: bool) -> None:
    st.session_state[key] = value


def _actions(run: RunInfo, root: Path) -> None:
    key = run.run_id
    cols = st.columns([1, 1, 1, 2])
    if run.active:
        cols[0].button("Stop", key=f"stop-{key}", on_click=_on_stop, args=(run.path,),
                       help="SIGTERM to the run's process group: it saves a checkpoint after "
                            "the current step and exits.")
        if run.state == "stopping":
            cols[1].button("Kill", key=f"kill-{key}", on_click=_on_stop, args=(run.path, True),
                           help="SIGKILL: ends it now, without a checkpoint.")
        return
    if run.checkpoints:
        last = run.checkpoints[-1]
        default_until = run.max_steps if run.max_steps and run.step < run.max_steps \
            else (run.max_steps or run.step) + 100
        cols[3].number_input("Resume until step", min_value=last + 1,
                             value=max(int(default_until), last + 1), step=10,
                             key=f"until-{key}")
        cols[0].button("Resume", key=f"resume-{key}", on_click=_on_resume, args=(run.path, key),
                       help=f"Continue from checkpoint-{last} with its optimizer state.")
    confirm_key = f"confirm-delete-{key}"
    if st.session_state.get(confirm_key):
        st.warning(f"Delete {key} and all its checkpoints?")
        yes, no = st.columns(2)
        yes.button("Yes, delete", key=f"delete-yes-{key}", type="primary", on_click=_on_delete,
                   args=(run.path, root, key))
        no.button("Cancel", key=f"delete-no-{key}", on_click=_set, args=(confirm_key, False))
    else:
        cols[1].button("Delete", key=f"delete-{key}", on_click=_set, args=(confirm_key, True))


def render_run(run: RunInfo, root: Path) -> None:
    cfg = run.config
    started = dt.datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M") \
        if run.created_at else "?"
    st.markdown(f"{BADGES.get(run.state, '•')} **{run.state}** · started {started} · "
                f"model `{cfg.get('model', '?')}` · data `{Path(str(cfg.get('data', '?'))).name}`")
    steps = f"step {run.step}/{run.max_steps}" if run.max_steps else f"step {run.step}"
    eta = f" · ETA {run_files.format_eta(run.eta_s)}" if run.state == "running" else ""
    st.progress(run.progress, text=f"{steps}{eta}")
    if run.reason and run.state in ("failed",):
        st.error(run.reason)
    elif run.reason:
        st.caption(run.reason)
    stats = _stats_line(run)
    if stats:
        st.caption(stats)
    render_loss_chart(run)
    _actions(run, root)
    with st.expander("Log (tail)"):
        st.code(registry.log_tail(run.path) or "(empty)", language=None)
    with st.expander("Command line"):
        st.code(run.launch_command_line or "(unknown)", language="bash")
        if run.command_line != run.launch_command_line:
            st.caption("Latest resume:")
            st.code(run.command_line, language="bash")
        st.caption(f"Run folder: `{run.path}`"
                   + (f" · checkpoints: {', '.join(map(str, run.checkpoints))}"
                      if run.checkpoints else ""))


def _runs_body(root: Path) -> None:
    message = st.session_state.pop("train_runs_message", None)
    if message:
        (st.error if message[0] == "error" else st.info)(message[1])
    runs = registry.list_runs(root)
    if not runs:
        st.info("No runs yet. Launch one above; runs are kept on disk in "
                f"`{root}`.")
        return
    for i, run in enumerate(runs):
        label = f"{BADGES.get(run.state, '•')} {run.run_id} · {run.state}"
        with st.expander(label, expanded=i == 0 or run.active):
            render_run(run, root)


def render_runs(root: Path) -> None:
    """The runs list; refreshed every 2 s while a run is active, every 15 s otherwise."""
    st.subheader("Runs")
    any_active = any(head.active for head in registry.list_heads(root))
    refresh = ACTIVE_REFRESH_S if any_active else IDLE_REFRESH_S
    st.fragment(run_every=refresh)(_runs_body)(root)
