"""Token budgets: what a stage is expected to spend, estimated from its config before anything loads.

A stage declares its estimator when it registers (``register_stage(..., budget=...)``); the dry run
(:mod:`moalign.plan`) reports ``steps x sequences per step x tokens per sequence``, an upper bound with
every sequence at its maximum length. What a stage did spend is :mod:`moalign.cost`'s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from moalign.data.adapters import AdapterSpec


@dataclass
class Budget:
    """``steps`` x ``sequences`` per step x ``tokens`` per sequence (None: unknown)."""

    steps: int | None
    sequences: int
    tokens: int
    what: str
    first_step: int = 0
    """The fewest tokens the first training step trains, one per sequence it must take (0: a stage that
    trains nothing, or whose trained tokens are not counted); a stage that trained fewer is not finished."""

    @property
    def total(self) -> int | None:
        return None if self.steps is None else self.steps * self.sequences * self.tokens


def source_rows(value: Any, num_samples: int | None = None) -> int | None:
    """Records a stage reads, where known: ``num_samples``, else from the adapters' recorded split sizes."""
    if num_samples is not None:
        return num_samples
    specs = value if isinstance(value, list) else [value]
    if not all(isinstance(s, AdapterSpec) for s in specs):
        return None
    total = 0
    for spec in specs:
        size = sliced_size(spec.resolved_split, spec.definition.sizes)
        if size is None or spec.path is not None:
            return None
        total += min(size, spec.sample or size) * spec.definition.records_per_row
    return total


def sliced_size(split: str, sizes: dict[str, int]) -> int | None:
    """Rows of ``split`` (``name`` or ``name[a:b]`` with row or percent bounds) from known split sizes."""
    match = re.fullmatch(r"([\w.-]+)(?:\[(-?\d*%?):(-?\d*%?)\])?", split)
    if match is None or match.group(1) not in sizes:
        return None
    size = sizes[match.group(1)]

    def bound(text: str | None, default: int) -> int:
        if not text:
            return default
        value = round(size * int(text[:-1]) / 100) if text.endswith("%") else int(text)
        return max(0, min(size, value + size if value < 0 else value))

    return max(0, bound(match.group(3), size) - bound(match.group(2), 0))


def training_steps(max_steps: int, rows: int | None, epochs: float, per_step: int) -> int | None:
    """``max_steps`` when positive, else the steps ``epochs`` over ``rows`` records take (None: rows unknown)."""
    if max_steps > 0:
        return max_steps
    return None if rows is None else math.ceil(rows * epochs / per_step)


def sampling_budget(config: Any) -> Budget:
    """One pass sampling ``num_generations`` completions of at most ``max_new_tokens`` tokens for each of
    ``num_prompts`` prompts (e.g. the ``best_of_n`` stage), plus its ``extra_level_samples`` as if every
    prompt were tagged in each of their dimensions."""
    extra = sum(sum(counts.values()) for counts in (getattr(config, "extra_level_samples", None) or {}).values())
    per_prompt = config.num_generations + extra
    return Budget(1, config.num_prompts * per_prompt, config.max_new_tokens, "generated tokens")
