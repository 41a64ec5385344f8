"""Side by side: one prompt, every variant's answer streaming into its own column, with the
same sampling settings and seed; tokens and tokens/s under each answer; Regenerate."""

from __future__ import annotations

import logging

import streamlit as st

from backend.compare.errors import CompareError
from backend.compare.variants import Variant
from backend.model_loader import ModelLoadError
from backend.prompting import PromptTooLongError
from backend.sampling import SamplingSettings
from components.compare_sampling import describe
from components.compare_setup import CompareSetup, ready_or_explain
from components.model_cache import progress_to
from components.reply_stream import draw_stream, wait_notice

log = logging.getLogger(__name__)
RESULT_KEY = "cmp_side_result"


def _next_seed() -> None:
    """Regenerate with sampling draws the next seed (still one seed for every variant)."""
    if not st.session_state.get("cmp_greedy"):
        st.session_state["cmp_seed"] = (int(st.session_state.get("cmp_seed", 0)) + 1) % 2**31


def _messages(system: str, prompt: str) -> list[dict]:
    head = [{"role": "system", "content": system.strip()}] if system.strip() else []
    return [*head, {"role": "user", "content": prompt}]


def load_base(setup: CompareSetup) -> bool:
    """Load the base into the shared engine with a progress bar; False (shown) on failure."""
    if setup.host.holds_base():
        return True
    bar = st.progress(0.0, text=f"Loading the base model {setup.host.spec.path}…")
    try:
        setup.host.ensure_base(progress_to(bar))
    except (CompareError, ModelLoadError) as exc:
        bar.empty()
        st.error(str(exc))
        return False
    bar.empty()
    return True


def _generate_one(setup: CompareSetup, variant: Variant, messages: list[dict],
                  settings: SamplingSettings) -> dict:
    """Stream one variant's answer into the current column; returns what was drawn."""
    st.markdown(f"**{variant.label}**")
    status, body, caption = st.empty(), st.empty(), st.empty()
    entry: dict = {"label": variant.label, "key": variant.key, "text": "", "stats": None,
                   "error": None}
    waiting = wait_notice(status, "Waiting for another generation to finish")
    status.caption("Waiting for its turn…")
    stream = None
    try:
        with setup.host.generating(variant, on_wait=waiting):
            status.empty()
            stream = setup.host.engine.chat_stream(messages, settings)
            draw_stream(stream, body)
    except (CompareError, PromptTooLongError, ModelLoadError) as exc:
        entry["error"] = str(exc)
        status.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page shows a message, the log the traceback
        log.exception("comparison generation failed")
        entry["error"] = f"Generation failed: {type(exc).__name__}: {str(exc)[:300]}"
        status.error(entry["error"])
    finally:
        if stream is not None:
            stream.close()
            entry["text"] = stream.text
            entry["stats"] = stream.stats.to_dict()
    if entry["stats"] is not None:
        body.markdown(entry["text"] or "*(empty answer)*")
        caption.caption(_stats_line(entry["stats"]))
    return entry


def _stats_line(stats: dict) -> str:
    return (f"{stats['new_tokens']} tokens · {stats['tokens_per_s']:.1f} tokens/s · "
            f"stopped by {stats['stop_reason'] or 'n/a'}")


def _run(setup: CompareSetup, prompt: str, system: str, settings: SamplingSettings) -> None:
    if not load_base(setup):
        return
    messages = _messages(system, prompt)
    columns = st.columns(len(setup.variants))
    answers = []
    for column, variant in zip(columns, setup.variants, strict=True):
        with column:
            answers.append(_generate_one(setup, variant, messages, settings))
    st.session_state[RESULT_KEY] = {"prompt": prompt, "system": system,
                                    "settings": describe(settings), "answers": answers}
    st.caption(f"Settings: {describe(settings)}")


def _show(result: dict) -> None:
    answers = result["answers"]
    columns = st.columns(len(answers))
    for column, entry in zip(columns, answers, strict=True):
        with column:
            st.markdown(f"**{entry['label']}**")
            if entry["error"]:
                st.error(entry["error"])
            if entry["stats"] is not None:
                st.markdown(entry["text"] or "*(empty answer)*")
                st.caption(_stats_line(entry["stats"]))
    st.caption(f"Settings: {result['settings']}")


def render_side_by_side(setup: CompareSetup, settings: SamplingSettings) -> None:
    """The prompt form, the buttons, and the columns of answers."""
    st.text_area("System prompt (optional)", key="cmp_system", height=68)
    st.text_area("Prompt", key="cmp_prompt", height=100,
                 placeholder="Ask something the training data covers…")
    previous = st.session_state.get(RESULT_KEY)
    left, right, _ = st.columns([1, 1, 4])
    generate = left.button("Generate", key="cmp_generate", type="primary", width="stretch")
    regenerate = right.button(
        "Regenerate", key="cmp_regenerate", on_click=_next_seed, width="stretch",
        help="The last prompt again, for every variant; with sampling, the next seed.")
    if regenerate and previous is None:
        st.warning("Nothing to regenerate yet: press Generate first.")
    elif generate or regenerate:
        prompt = st.session_state.get("cmp_prompt", "") if generate else previous["prompt"]
        system = st.session_state.get("cmp_system", "") if generate else previous["system"]
        if not prompt.strip():
            st.warning("Enter a prompt first.")
        elif ready_or_explain(setup):
            _run(setup, prompt, system, settings)
            return
    if previous is not None:
        _show(previous)
