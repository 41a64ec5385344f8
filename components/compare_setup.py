"""Sidebar section: the base model, and up to four variants (the base itself, checkpoints of
training runs, other adapter folders), each checked before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from backend.compare.catalog import list_candidates
from backend.compare.errors import CompareError
from backend.compare.paths import user_path
from backend.compare.variants import BASE, BASE_LABEL, Variant, VariantHost
from backend.model_loader import ModelLoadError
from components.model_cache import get_engine

MAX_VARIANTS = 4


@dataclass
class CompareSetup:
    """What the page compares: the host of the base model and the usable variants."""

    host: VariantHost
    variants: list[Variant]
    base_error: str | None = None
    status_slot: Any = None

    @property
    def ready(self) -> bool:
        return not self.base_error and bool(self.variants)


def ready_or_explain(setup: CompareSetup) -> bool:
    """True when the setup can run; otherwise False, with the reason shown in the page."""
    if setup.base_error:
        st.error(setup.base_error)
    elif not setup.variants:
        st.warning("Pick at least one usable variant in the sidebar.")
    return setup.ready


def _extra_paths(text: str) -> list[str]:
    seen, paths = set(), []
    for line in text.splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            paths.append(line)
    return paths


def _folder_label(path: str) -> str:
    """`parent/name` of a typed folder (the text itself when it is no usable path)."""
    try:
        folder = user_path(path)
    except CompareError:
        return path
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name or path


def _options(extra: list[str]) -> dict[str, Variant]:
    """Choice label -> variant; variant labels are unique (they name table columns)."""
    options = {BASE_LABEL: BASE}
    for cand in list_candidates():
        options[cand.label] = Variant(cand.label, str(cand.path))
    used = {v.label for v in options.values()}
    for path in extra:
        label, n = _folder_label(path), 2
        while label in used:
            label, n = f"{_folder_label(path)} ({n})", n + 1
        used.add(label)
        options[f"📁 {path}"] = Variant(label, path)
    return options


def _release(host: VariantHost) -> None:
    try:
        host.release()
    except (CompareError, ModelLoadError) as exc:
        st.session_state["cmp_release_error"] = str(exc)


def render_status(setup: CompareSetup) -> None:
    """What the shared model holds now (drawn last, into the sidebar slot kept for it)."""
    loaded = get_engine().loaded
    side = setup.status_slot.container() if setup.status_slot is not None else st.sidebar
    error = st.session_state.pop("cmp_release_error", None)
    if error:
        side.error(error)
    if setup.host.holds_base(loaded):
        adapters = setup.host.loaded_adapters()
        side.caption(f"Shared model: **{loaded.name}** is the base · {len(adapters)} adapter(s) "
                     "loaded next to it")
        if adapters:
            side.button("Drop loaded adapters", key="cmp_release", on_click=_release,
                        args=(setup.host,),
                        help="Reloads the base model without adapters (this also gives the "
                             "fast CUDA decode path back).")
    elif loaded is not None:
        side.caption(f"Shared model now: **{loaded.name}**. Generate or Evaluate loads the base "
                     "in its place (the Chat page uses the same model).")
    else:
        side.caption("No model loaded yet: Generate or Evaluate loads the base.")


def render_compare_setup() -> CompareSetup:
    """Draw the model pickers; return the host and the variants that passed the checks."""
    side = st.sidebar
    side.subheader("Models")
    base = side.text_input("Base model", key="cmp_base",
                           help="A local Hugging Face model folder, or `default` for the "
                                "embedded SmolLM2-135M-Instruct.")
    trust = side.checkbox("Trust remote code", key="cmp_trust",
                          help="Only for base models that ship their own code (ChatGLM3).")
    extra = _extra_paths(side.text_area(
        "Other adapter folders", key="cmp_extra", height=80,
        placeholder="/path/to/adapter (one folder per line)",
        help="Any LoRA adapter folder (adapter_config.json + weights); it becomes a choice "
             "in the list below."))
    try:
        options = _options(extra)
    except OSError as exc:
        side.error(f"Cannot read the runs folder: {exc}")
        options = {BASE_LABEL: BASE}
    chosen = st.session_state.get("cmp_variants")
    if chosen is None:
        chosen = [BASE_LABEL]
    st.session_state["cmp_variants"] = [c for c in chosen if c in options][:MAX_VARIANTS]
    labels = side.multiselect(
        f"Variants (up to {MAX_VARIANTS})", list(options), key="cmp_variants",
        max_selections=MAX_VARIANTS,
        help="The base model with adapters off, every checkpoint-N and final adapter of the "
             "training runs, and the folders added above.")
    host = VariantHost(get_engine(), base or "default", trust)
    setup = CompareSetup(host, [])
    try:
        host.check_base_folder()
    except CompareError as exc:
        setup.base_error = str(exc)
        side.error(str(exc))
    for label in labels:
        variant = options[label]
        try:
            host.check(variant)
        except CompareError as exc:
            side.error(f"{variant.label}: {exc}")
            continue
        setup.variants.append(variant)
    if not labels:
        side.info("Pick at least one variant.")
    setup.status_slot = side.empty()
    return setup
