"""The fast decode path for CUDA: a static KV cache and a compiled one-token step (CUDA graphs).

The cache is allocated once per model and reused by every generation, so the compiled step and
its captured CUDA graph are reused too (no recompilation per reply). Decoding is pipelined by one
token: the GPU already runs step t+1 while the CPU hands token t to the detokenizer, so the
Python side of streaming hides behind the GPU. On the CPU the same code runs uncompiled (that is
how its equality with the plain path is tested there).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from backend.sampling import SamplingSettings, build_logits_processors

log = logging.getLogger(__name__)

DEFAULT_CACHE_LEN = int(os.environ.get("WORKBENCH_STATIC_CACHE_LEN", "4096"))
# Cache sizes: a reply uses the smallest that holds prompt + max_new_tokens. Attention over unused
# cache slots is not free (one query row per head gives the kernel little parallelism), so short
# conversations should not pay for the longest cache. Each size compiles its own graph once.
BUCKETS = (1024, 2048, 4096, 8192, 16384, 32768)


def static_path_blocker(model: Any) -> str | None:
    """Why the static path cannot serve this model, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if type(model).__module__.startswith("transformers_modules"):
        return "remote-code model"
    if getattr(model, "peft_config", None):
        return "LoRA adapter loaded (adapters switch at run time)"
    if getattr(model, "quantization_method", None) or getattr(model, "is_quantized", False):
        return "quantized model"
    devices = set((getattr(model, "hf_device_map", None) or {}).values())
    if len(devices) > 1:
        return "model spread over several devices"
    if model.get_input_embeddings().weight.device.type != "cuda":
        return "model is not on a CUDA GPU"
    return None


class StaticDecoder:
    """Static-cache decoding for one model (one generation at a time: the engine's lock)."""

    def __init__(self, model: Any, max_cache_len: int = DEFAULT_CACHE_LEN,
                 compile: bool = True, fullgraph: bool = True,
                 buckets: tuple[int, ...] = BUCKETS) -> None:
        import torch

        self.model = model
        self.max_cache_len = max_cache_len
        self.buckets = sorted({b for b in buckets if b < max_cache_len} | {max_cache_len})
        self.device = model.get_input_embeddings().weight.device
        self._caches: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._compiled = compile
        step = self._forward
        if compile:
            # Searches tile sizes for the fused kernels (gpt-fast's setting): a few % per token.
            torch._inductor.config.coordinate_descent_tuning = True
            step = torch.compile(step, mode="reduce-overhead", fullgraph=fullgraph, dynamic=False)
        self._step = step

    def _forward(self, input_ids, cache_position, cache):
        return self.model(input_ids=input_ids, past_key_values=cache,
                          cache_position=cache_position, use_cache=True).logits[:, -1, :]

    def _cache_for(self, length: int):
        from transformers import StaticCache

        size = next(b for b in self.buckets if b >= length)
        if size not in self._caches:
            self._caches[size] = StaticCache(config=self.model.config, max_cache_len=size)
        return self._caches[size]

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        return prompt_tokens + max_new_tokens <= self.max_cache_len

    def warm_up(self, steps: int = 4, lengths: tuple[int, ...] | None = None) -> None:
        """Compile the step and capture its CUDA graphs before the first user waits on them."""
        from backend.generation import GenerationStats

        for length in lengths or self.buckets[:1]:
            settings = SamplingSettings(temperature=0.0, max_new_tokens=steps)
            prompt = [1] * max(1, min(length, self.max_cache_len) - steps)
            for _ in self.decode(prompt, settings, set(), GenerationStats(), ignore_eos=True):
                pass

    def decode(
        self, input_ids: list[int], settings: SamplingSettings, stop_ids: set[int], stats: Any,
        stop_event: threading.Event | None = None, ignore_eos: bool = False,
    ) -> Iterator[int]:
        """Yield new token ids, like `backend.generation.decode_loop`, on the static cache."""
        import torch

        if not self.fits(len(input_ids), settings.max_new_tokens):
            raise ValueError("prompt plus max_new_tokens exceed the static cache")
        with self._lock:
            yield from self._decode(torch, input_ids, settings, stop_ids, stats, stop_event,
                                    ignore_eos)

    def _decode(self, torch, input_ids, settings, stop_ids, stats, stop_event,
                ignore_eos) -> Iterator[int]:
        from backend.generation import make_generator, pick_next_token

        device, cuda = self.device, self.device.type == "cuda"
        processors = build_logits_processors(settings)
        generator = make_generator(settings, device)

        def pick(ids, logits):
            return pick_next_token(ids, logits, processors, generator)

        n = len(input_ids)
        cache = self._cache_for(n + settings.max_new_tokens)
        host = torch.empty(2, dtype=torch.long, pin_memory=cuda)
        ready = [torch.cuda.Event() if cuda else None for _ in range(2)]

        def to_host(token, slot):
            host[slot:slot + 1].copy_(token, non_blocking=cuda)
            if cuda:
                ready[slot].record()

        def read(slot) -> int:
            if cuda:
                ready[slot].synchronize()
            return int(host[slot])

        with torch.inference_mode():
            cache.reset()
            ids = torch.tensor([input_ids], device=device)
            logits = self.model(input_ids=ids, past_key_values=cache,
                                cache_position=torch.arange(n, device=device), use_cache=True,
                                logits_to_keep=1).logits[:, -1, :]
            token = pick(ids, logits)
            position = torch.tensor([n], device=device)
            to_host(token, 0)
        for step in range(settings.max_new_tokens):
            with torch.inference_mode():
                following = None
                if step + 1 < settings.max_new_tokens:  # launch step t+1 before reading token t
                    if processors:
                        ids = torch.cat([ids, token[:, None]], dim=-1)
                    if self._compiled:
                        torch.compiler.cudagraph_mark_step_begin()
                    logits = self._step(token[:, None], position, cache)
                    following = pick(ids, logits)
                    position.add_(1)
                value = read(step % 2)
            if value in stop_ids and not ignore_eos:
                stats.stop_reason = "eos"
                return
            yield value
            if stop_event is not None and stop_event.is_set():
                stats.stop_reason = "stopped"
                return
            if following is None:
                break
            with torch.inference_mode():
                token = following
                to_host(token, (step + 1) % 2)
        stats.stop_reason = "length"
