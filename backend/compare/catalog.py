"""The adapters training produced: every complete `checkpoint-N` and the final adapter of every
run under the runs root (read from disk each time, through the training registry)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.training import registry, run_files


@dataclass(frozen=True)
class Candidate:
    """One adapter a run wrote."""

    run_id: str
    path: Path
    step: int | None  # None: the run's final adapter
    state: str

    @property
    def label(self) -> str:
        return f"{self.run_id} · {'final' if self.step is None else f'checkpoint-{self.step}'}"


def list_candidates(root: Path | None = None) -> list[Candidate]:
    """Newest run first; inside a run, checkpoints by step, then the final adapter."""
    found = []
    for run in registry.list_heads(root):
        run_id = run.path.name
        for step, path in run_files.checkpoints(run.path):
            found.append(Candidate(run_id, path, step, run.state))
        if run_files.has_final_adapter(run.path):
            found.append(Candidate(run_id, run.path, None, run.state))
    return found
