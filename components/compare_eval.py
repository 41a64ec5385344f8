"""Batch evaluation: a validation file, a progress bar, the scores per variant (table and a bar
chart per metric), a per-sample table with every variant's output, and CSV/JSON downloads."""

from __future__ import annotations

import datetime as dt
import logging

import altair as alt
import pandas as pd
import streamlit as st

from backend.compare.cache import ResultCache
from backend.compare.errors import CompareError
from backend.compare.evaluate import EvalSettings, evaluate
from backend.compare.metrics import METRIC_LABELS, METRICS
from backend.compare.results import LOSS_LABEL, EvalResult
from backend.model_loader import ModelLoadError
from backend.sampling import SamplingSettings
from components.compare_sampling import describe
from components.compare_setup import CompareSetup, ready_or_explain
from components.compare_side import load_base
from components.compare_state import remember_inputs
from components.model_cache import progress_to
from components.reply_stream import wait_notice

log = logging.getLogger(__name__)
SCALE_NOTE = ("ROUGE-1, ROUGE-2, ROUGE-L (F1) and BLEU-4 (smoothing method 3) are on a 0–100 "
              "scale, higher is better; Chinese text is segmented with jieba, other text split "
              "into words. The validation loss is the mean negative log-likelihood of the "
              "reference answers' tokens (nats per token), lower is better.")
CHART_COLUMNS = [METRIC_LABELS[m] for m in METRICS] + [LOSS_LABEL]


def _take_upload(cache: ResultCache) -> None:
    upload = st.file_uploader("Upload a validation file", type=["json", "jsonl"],
                              key="cmp_eval_upload",
                              help="Any training format: ChatGLM3 conversations, "
                                   "messages, Alpaca, ADGEN, prompt/response.")
    if upload is None or st.session_state.get("cmp_eval_upload_seen") == upload.file_id:
        return
    st.session_state["cmp_eval_upload_seen"] = upload.file_id
    try:
        path = cache.save_upload(upload.name, upload.getvalue())
    except OSError as exc:
        st.error(f"Cannot keep the uploaded file: {exc}")
        return
    st.session_state["cmp_eval_path"] = str(path)


def _chart(frame: pd.DataFrame, column: str) -> alt.Chart:
    """Horizontal bars, one per variant (long variant names stay readable)."""
    scale = alt.Scale(domain=[0, 100]) if column != LOSS_LABEL else alt.Scale(zero=True)
    title = "nats per token, lower is better" if column == LOSS_LABEL else "0–100"
    return alt.Chart(frame).mark_bar().encode(
        y=alt.Y("variant:N", title=None, sort=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X(f"{column}:Q", title=title, scale=scale),
        color=alt.Color("variant:N", legend=None),
        tooltip=["variant", alt.Tooltip(f"{column}:Q", format=".2f")],
    ).properties(title=column, height=alt.Step(30))


def render_result(result: EvalResult) -> None:
    """Tables, charts and downloads of one evaluation."""
    if result.from_cache:
        newest = max(v.created_at for v in result.variants)
        when = dt.datetime.fromtimestamp(newest).strftime("%Y-%m-%d %H:%M")
        st.info(f"Cached results (computed {when}); nothing was recomputed.", icon="💾")
    summary = result.summary_frame()
    st.dataframe(summary, hide_index=True, key="cmp_summary_table", column_config={
        **{c: st.column_config.NumberColumn(format="%.2f") for c in CHART_COLUMNS},
        LOSS_LABEL: st.column_config.NumberColumn(format="%.4f"),
        "tokens/s": st.column_config.NumberColumn(format="%.1f")})
    for start in range(0, len(CHART_COLUMNS), 3):
        row = CHART_COLUMNS[start:start + 3]
        for place, column in zip(st.columns(3), row, strict=False):
            with place:
                st.altair_chart(_chart(summary[["variant", column]], column), width="stretch")
    st.markdown("**Per sample**")
    st.dataframe(result.samples_frame(), hide_index=True, key="cmp_samples_table")
    left, middle, right = st.columns(3)
    left.download_button("Download CSV (per sample)", result.to_csv(), "compare_samples.csv",
                         "text/csv", key="cmp_dl_csv")
    middle.download_button("Download CSV (summary)", result.summary_csv(),
                           "compare_summary.csv", "text/csv", key="cmp_dl_summary")
    right.download_button("Download JSON", result.to_json(), "compare_results.json",
                          "application/json", key="cmp_dl_json")


def _run(setup: CompareSetup, path: str, settings: EvalSettings,
         cache: ResultCache) -> EvalResult | None:
    if not load_base(setup):
        return None
    bar = st.progress(0.0, text="Starting")
    note = st.empty()
    waiting = wait_notice(note, "Waiting for another generation to finish")
    show = progress_to(bar)

    def progress(fraction: float, message: str) -> None:
        note.empty()
        show(fraction, message)

    try:
        result = evaluate(setup.host, setup.variants, path, settings, cache, progress, waiting)
    except (CompareError, ModelLoadError) as exc:
        bar.empty()
        st.error(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - the page shows a message, the log the traceback
        log.exception("evaluation failed")
        bar.empty()
        st.error(f"The evaluation failed: {type(exc).__name__}: {str(exc)[:300]}")
        return None
    bar.empty()
    remember_inputs(cache)
    return result


def render_batch_evaluation(setup: CompareSetup, sampling: SamplingSettings,
                            cache: ResultCache) -> None:
    """The file and sample-count inputs, the Evaluate button and the results."""
    st.caption(SCALE_NOTE)
    _take_upload(cache)
    path = st.text_input("Validation file", key="cmp_eval_path",
                         placeholder="/path/to/val.jsonl",
                         help="A .json list or .jsonl file in any training format; the last "
                              "assistant turn of each record is the reference answer.")
    st.number_input("Samples (the first N records)", min_value=1, max_value=10_000, step=1,
                    key="cmp_eval_max")
    settings = EvalSettings(sampling, int(st.session_state["cmp_eval_max"]))
    st.caption(f"Generation: {describe(sampling)} (sidebar). Results are cached per variant, "
               "file and settings.")
    clicked = st.button("Evaluate", key="cmp_evaluate", type="primary")
    result = None
    if clicked:
        if not path.strip():
            st.warning("Enter or upload a validation file first.")
        elif ready_or_explain(setup):
            result = _run(setup, path, settings, cache)
    elif path.strip() and setup.ready:
        try:
            result = evaluate(setup.host, setup.variants, path, settings, cache,
                              only_cached=True)
        except CompareError:
            result = None  # shown when Evaluate is pressed
        if result is None:
            st.caption("Not evaluated yet with these variants, file and settings.")
    if result is not None:
        render_result(result)
