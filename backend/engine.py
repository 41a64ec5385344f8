"""The process-wide model engine: one loaded model shared by every page and session.

Loading, switching (the previous model is freed first) and a generation lock, so that
generations on the shared model run one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from backend.generation import ChatStream, stop_token_ids
from backend.model_loader import LoadedModel, ModelLoadError, ModelSpec, free_model, load_model
from backend.prompting import FALLBACK_STOP_STRINGS, fit_to_context, has_chat_template
from backend.sampling import SamplingSettings

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class ModelEngine:
    """Holds at most one model; thread-safe loading and one-at-a-time generation."""

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self._stop_ids: set[int] = set()
        self._load_lock = threading.Lock()
        self._generation_lock = threading.Lock()

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def load(self, spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
        """Load `spec` unless it is already loaded. On failure the previous model stays."""
        with self._load_lock:
            if self._loaded is not None and self._loaded.spec == spec:
                return self._loaded
            previous = self._loaded.spec if self._loaded else None
            with self._generation_lock:  # never pull a model out from under a generation
                free_model(self._loaded)
                self._loaded = None
                try:
                    loaded = load_model(spec, progress)
                except ModelLoadError:
                    if previous is not None:
                        log.info("reloading %s after a failed switch", previous.path)
                        self._set(load_model(previous))
                    raise
                self._set(loaded)
                return loaded

    def _set(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._stop_ids = stop_token_ids(loaded.model, loaded.tokenizer)

    def unload(self) -> None:
        with self._load_lock, self._generation_lock:
            free_model(self._loaded)
            self._loaded = None

    @contextmanager
    def generation_slot(
        self, on_wait: Callable[[float], None] | None = None, poll_s: float = 0.25,
    ) -> Iterator[None]:
        """Hold the generation lock; while another session holds it, call `on_wait(seconds)`."""
        started = time.perf_counter()
        while not self._generation_lock.acquire(timeout=poll_s):
            if on_wait is not None:
                on_wait(time.perf_counter() - started)
        try:
            yield
        finally:
            self._generation_lock.release()

    def chat_stream(
        self, messages: list[dict], settings: SamplingSettings, tools: list[dict] | None = None,
        ignore_eos: bool = False,
    ) -> ChatStream:
        """A stream of the model's reply to `messages`; old turns are dropped to fit the context.

        Raises PromptTooLongError when the newest message alone does not fit.
        """
        loaded = self._loaded
        if loaded is None:
            raise ModelLoadError("No model is loaded.")
        fitted = fit_to_context(
            loaded.tokenizer, messages, settings.max_new_tokens, loaded.context_length, tools
        )
        stop_strings = () if has_chat_template(loaded.tokenizer) else FALLBACK_STOP_STRINGS
        return ChatStream(
            loaded.model, loaded.tokenizer, fitted.input_ids, settings, self._stop_ids,
            stop_strings=stop_strings, decode_path=loaded.decode_path, ignore_eos=ignore_eos,
            dropped_messages=fitted.dropped_messages, static_decoder=loaded.static_decoder,
        )
