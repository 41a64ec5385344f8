"""CUDA_VISIBLE_DEVICES: which physical (NVML) GPUs a process's CUDA sees, and at what index.

Entries are read the way CUDA reads them: integers, GPU UUIDs (the "GPU-" prefix may be left
out, and a unique prefix is enough) and MIG UUIDs, up to the first entry that matches no device.
Integers are taken as NVML indices, which is PCI bus order: CUDA enumerates in that order when
CUDA_DEVICE_ORDER=PCI_BUS_ID (and, in practice, on machines whose GPUs are all the same model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Given a MIG device UUID, the NVML index of the GPU that holds it (None when unknown).
MigResolver = Callable[[str], "int | None"]


def _strip_gpu_prefix(text: str) -> str:
    text = text.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _match_uuid(token: str, uuids: Sequence[str | None]) -> int | None:
    """The index whose UUID `token` names, or a unique prefix of; None if none or ambiguous."""
    want = _strip_gpu_prefix(token)
    if not want:
        return None
    hits = [i for i, uuid in enumerate(uuids) if uuid and _strip_gpu_prefix(uuid).startswith(want)]
    return hits[0] if len(hits) == 1 else None


def resolve_entry(token: str, uuids: Sequence[str | None],
                  mig_parent: MigResolver | None = None) -> int | None:
    """The NVML index one CUDA_VISIBLE_DEVICES entry names, or None when it names none."""
    token = token.strip()
    if not token:
        return None
    if token.lstrip("+-").isdigit():
        index = int(token)
        return index if 0 <= index < len(uuids) else None
    if token.upper().startswith("MIG-"):
        return mig_parent(token) if mig_parent is not None else None
    return _match_uuid(token, uuids)


def visible_indices(value: str | None, uuids: Sequence[str | None],
                    mig_parent: MigResolver | None = None) -> list[int]:
    """The NVML indices CUDA sees, in CUDA order, for a CUDA_VISIBLE_DEVICES `value`.

    `uuids[i]` is the UUID of NVML device i. `value` None (unset) means every device.
    A device named twice is counted once.
    """
    if value is None:
        return list(range(len(uuids)))
    seen: list[int] = []
    for token in value.split(","):
        index = resolve_entry(token, uuids, mig_parent)
        if index is None:
            break
        if index not in seen:
            seen.append(index)
    return seen


def cuda_index_map(value: str | None, uuids: Sequence[str | None],
                   mig_parent: MigResolver | None = None) -> dict[int, int]:
    """NVML index -> the CUDA index (cuda:N) it has under CUDA_VISIBLE_DEVICES=`value`."""
    return {nvml: cuda for cuda, nvml in enumerate(visible_indices(value, uuids, mig_parent))}
