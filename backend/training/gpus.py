"""The GPUs a run can be given: NVML indices (PCI bus order), names and memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuChoice:
    """One GPU as the launcher's pick offers it."""

    index: int
    name: str
    memory_gib: float | None

    @property
    def label(self) -> str:
        memory = f" · {self.memory_gib:.0f} GiB" if self.memory_gib else ""
        return f"GPU {self.index} · {self.name}{memory}"


def _from_nvml() -> list[GpuChoice] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver: try torch
        return None
    try:
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3
            found.append(GpuChoice(i, name, memory))
        return found
    except Exception:  # noqa: BLE001
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def list_gpus() -> list[GpuChoice]:
    """Every NVIDIA GPU of the machine; empty when there is none (training runs on the CPU)."""
    found = _from_nvml()
    if found is not None:
        return found
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [GpuChoice(i, torch.cuda.get_device_name(i),
                          torch.cuda.get_device_properties(i).total_memory / 1024**3)
                for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []
