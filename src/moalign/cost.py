"""Cost accounting: what a stage spent (wall, CPU and GPU time, tokens generated and trained).

Tokens are counted inside a :func:`counting_tokens` scope the pipeline opens around each stage; the one
generation path, the on-policy loop and a trainer callback add to it with :func:`count_tokens`.
GPU time follows seed 002's table 8 ("GPU hours"): device-seconds held, i.e. wall time times the
GPUs the run uses (one per accelerate process); None where CUDA is absent.

Reading notes: docs/papers.md#costpy.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COST_KEYS = ("wall_time_s", "cpu_time_s", "gpu_time_s", "tokens_generated", "tokens_trained")
"""The numbers every ``stage.json`` records, summed by :func:`total_cost`."""


@dataclass
class TokenCount:
    """Tokens generated and trained within one :func:`counting_tokens` scope."""

    generated: int = 0
    trained: int = 0


_ACTIVE: ContextVar[TokenCount | None] = ContextVar("moalign_token_count", default=None)


@contextlib.contextmanager
def counting_tokens() -> Iterator[TokenCount]:
    """A scope whose :func:`count_tokens` calls add to the yielded :class:`TokenCount`."""
    count = TokenCount()
    token = _ACTIVE.set(count)
    try:
        yield count
    finally:
        _ACTIVE.reset(token)


def count_tokens(*, generated: int = 0, trained: int = 0) -> None:
    """Add to the innermost open :func:`counting_tokens` scope (no-op outside one)."""
    count = _ACTIVE.get()
    if count is not None:
        count.generated += int(generated)
        count.trained += int(trained)


def gpu_count() -> int:
    """GPUs this run holds: one per accelerate process (``WORLD_SIZE``) where CUDA is present, else 0."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) if torch.cuda.is_available() else 0


def gpu_seconds(wall_time_s: float, gpus: int) -> float | None:
    """Device-seconds (seed 002 table 8 counts GPU hours): wall time times GPUs; None without a GPU."""
    return round(wall_time_s * gpus, 3) if gpus > 0 else None


def total_cost(records: Iterable[dict[str, Any]]) -> dict[str, float | int | None]:
    """Sum :data:`COST_KEYS` over stage records; a key is None only when every record lacks it."""
    out: dict[str, float | int | None] = dict.fromkeys(COST_KEYS)
    for record in records:
        for key in COST_KEYS:
            value = record.get(key)
            if value is not None:
                out[key] = (out[key] or 0) + value
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def stage_records(run_root: str | Path) -> list[dict[str, Any]]:
    """The ``stage.json`` records of a run's finished stages, in order."""
    return [json.loads(p.read_text()) for p in sorted(Path(run_root).glob("[0-9][0-9]-*/stage.json"))]


def training_stages(run_root: str | Path) -> list[dict[str, Any]]:
    """The ``stage.json`` records of a run's training stages (evaluation stages excluded), in order."""
    return [r for r in stage_records(run_root) if r.get("type") != "eval"]


def find_run_root(path: str | Path) -> Path | None:
    """The run directory (one holding ``config.resolved.yaml``) that ``path`` lies in, if any."""
    for parent in [Path(path).resolve(), *Path(path).resolve().parents]:
        if (parent / "config.resolved.yaml").is_file():
            return parent
    return None
