"""One base model in the shared engine serving every variant: the base (adapters off) and LoRA
adapters loaded next to each other into it (peft through transformers' adapter API).

Switching variants only changes which adapter is active; the base is never reloaded. Adapters
are switched on only inside `generating()`, which holds the engine's generation lock: outside
it they are off, so the Chat (same engine, same lock) always sees the plain base model. Loading
an adapter turns the fast CUDA decode path off for that model (its captured graphs know nothing
of the adapters) until the model is reloaded.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import default_model
from backend.compare.adapters import (
    AdapterInfo,
    check_base,
    check_shapes,
    read_adapter,
    resolve_base,
)
from backend.compare.errors import CompareError
from backend.compare.paths import kind_of
from backend.engine import ModelEngine
from backend.model_loader import LoadedModel, ModelSpec, drop_fast_path

log = logging.getLogger(__name__)

BASE_LABEL = "Base model (adapters off)"
FAST_PATH_NOTE = "off: LoRA adapters loaded by Checkpoint Compare (reload the model to restore)"
# Which adapter name holds which folder, per model object (older versions are dropped).
_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Variant:
    """What one column shows: the base model (path None) or a LoRA adapter folder."""

    label: str
    path: str | None = None

    @property
    def is_base(self) -> bool:
        return self.path is None

    @property
    def key(self) -> str:
        return "base" if self.path is None else self.path


BASE = Variant(BASE_LABEL)


def _same_path(a: str, b: str) -> bool:
    try:
        return resolve_base(a) == resolve_base(b)
    except CompareError:
        return False


class VariantHost:
    """The engine's model as the base of a comparison; loads and switches adapters on it."""

    def __init__(self, engine: ModelEngine, base: str = default_model.DEFAULT_MODEL_ALIAS,
                 trust_remote_code: bool = False) -> None:
        base = base.strip() or default_model.DEFAULT_MODEL_ALIAS
        self.engine = engine
        self.base_problem: str | None = None
        try:
            self.base_folder = resolve_base(base)
        except CompareError as exc:
            self.base_problem, self.base_folder = str(exc), Path(base.replace("\x00", ""))
        if self.base_folder == resolve_base(default_model.DEFAULT_MODEL_ALIAS):
            base = default_model.DEFAULT_MODEL_ALIAS
        self.spec = ModelSpec(path=base, trust_remote_code=trust_remote_code)

    # --- the base ------------------------------------------------------------------------
    def holds_base(self, loaded: LoadedModel | None = None) -> bool:
        """True when the engine's model is this base without an adapter baked in."""
        loaded = loaded if loaded is not None else self.engine.loaded
        return (loaded is not None and loaded.adapter_path is None
                and _same_path(loaded.spec.path, self.spec.path))

    def check_base_folder(self) -> None:
        """CompareError for a base that cannot be one (missing, or itself an adapter)."""
        if self.base_problem:
            raise CompareError(self.base_problem)
        if self.spec.is_default:
            return
        folder = self.base_folder
        kind = kind_of(folder)
        if kind == "missing":
            raise CompareError(f"Base model folder not found: {folder}")
        if kind != "dir":
            raise CompareError(f"The base model must be a folder, not a file: {folder}")
        if (folder / "adapter_config.json").is_file():
            raise CompareError(f"{folder} is a LoRA adapter, not a base model: pick its base "
                               "model here and the adapter as a variant.")

    def ensure_base(self, progress: Callable[[float, str], None] | None = None) -> LoadedModel:
        """Load the base into the shared engine unless it is there already (ModelLoadError)."""
        loaded = self.engine.loaded
        if self.holds_base(loaded):
            return loaded
        self.check_base_folder()
        return self.engine.load(self.spec, progress)

    # --- adapters ------------------------------------------------------------------------
    def check(self, variant: Variant) -> AdapterInfo | None:
        """Checks that need no model: the folder is a LoRA adapter made for this base."""
        if variant.is_base:
            return None
        info = read_adapter(variant.path)
        check_base(info, self.base_folder)
        return info

    def loaded_adapters(self) -> dict[str, str]:
        """Adapter name -> folder of the adapters in the engine's model."""
        loaded = self.engine.loaded
        if loaded is None or loaded.model is None:
            return {}
        return dict(_LOADED.get(loaded.model, {}))

    def prepare(self, variants: list[Variant], on_wait: Callable[[float], None] | None = None,
                ) -> dict[str, str]:
        """Load the base and every adapter; returns variant key -> why it was refused."""
        self.ensure_base()
        refused = {}
        for variant in variants:
            if variant.is_base:
                continue
            try:
                with self.engine.generation_slot(on_wait):
                    self._adapter_name(self._current(), variant)
            except CompareError as exc:
                refused[variant.key] = str(exc)
        return refused

    def _current(self) -> LoadedModel:
        loaded = self.engine.loaded
        if not self.holds_base(loaded):
            now = loaded.name if loaded is not None else "nothing"
            raise CompareError(f"The shared model changed (now: {now}), for instance from the "
                               "Chat page. Run again to load the base model back.")
        return loaded

    def _adapter_name(self, loaded: LoadedModel, variant: Variant) -> str:
        """The adapter's name in the model, loading it first if need be (hold the lock)."""
        info = self.check(variant)
        model = loaded.model
        names = _LOADED.setdefault(model, {})
        if info.adapter_name in names:
            return info.adapter_name
        check_shapes(info, model)
        self._load(loaded, info)
        for old, path in list(names.items()):  # an older version of the same folder
            if path == str(info.path):
                model.delete_adapter(old)
                del names[old]
        names[info.adapter_name] = str(info.path)
        return info.adapter_name

    @staticmethod
    def _load(loaded: LoadedModel, info: AdapterInfo) -> None:
        model, name = loaded.model, info.adapter_name
        quiet = logging.getLogger("transformers.integrations.peft")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its load report lists the other adapters as missing
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                report = model.load_adapter(str(info.path), adapter_name=name)
        except Exception as exc:  # noqa: BLE001 - every load failure becomes a message
            if name in (getattr(model, "peft_config", None) or {}):
                model.delete_adapter(name)
            raise CompareError(f"Could not load the adapter {info.path}: {type(exc).__name__}: "
                               f"{str(exc)[:300]}") from None
        finally:
            quiet.setLevel(level)
        missing = sorted(k for k in getattr(report, "missing_keys", ()) or () if f".{name}." in k)
        model.disable_adapters()
        if missing:
            model.delete_adapter(name)
            raise CompareError(f"{info.path.name} is missing {len(missing)} weight(s) of its "
                               f"own config, e.g. {missing[0]}.")
        drop_fast_path(loaded, FAST_PATH_NOTE)

    def release(self) -> LoadedModel:
        """Drop every adapter by reloading the base (this also restores the fast decode path)."""
        self.check_base_folder()
        self.engine.unload()
        return self.engine.load(self.spec)

    # --- generating ----------------------------------------------------------------------
    @contextmanager
    def generating(self, variant: Variant, on_wait: Callable[[float], None] | None = None,
                   ) -> Iterator[LoadedModel]:
        """Hold the generation lock with `variant` active; adapters go off again at the end."""
        with self.engine.generation_slot(on_wait):
            loaded = self._current()
            model = loaded.model
            name = None if variant.is_base else self._adapter_name(loaded, variant)
            try:
                if name is None:
                    _adapters_off(model)
                else:
                    model.set_adapter(name)
                    model.enable_adapters()
                yield loaded
            finally:
                _adapters_off(model)


def _adapters_off(model: Any) -> None:
    if getattr(model, "_hf_peft_config_loaded", False):
        model.disable_adapters()


def variant_for(path: str, label: str | None = None) -> Variant:
    """A variant for an adapter folder, labelled by its folder name unless told."""
    return Variant(label or Path(path.strip()).name or path, path.strip())
