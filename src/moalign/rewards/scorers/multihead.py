"""The ``multihead`` scorer: one head (dimension) of the project's multi-head classification reward model.

The reward model (seed 002's MOSLIM RM, built by ``moalign.rm``) classifies the intensity of every preference
dimension of a (prompt, response) at once. Outputs: ``expected``, ``sum_n n * P(n)`` in ``1..N``; or
``target_probability``, ``P(target)`` for the intensity the prompt's tag asks for (``p_i^target`` of seed 002,
eq. 11) or a fixed ``target`` (NaN for a prompt without that tag). All objectives reading one reward model
share one loaded model and one forward pass per batch: the saving seed 002 claims over one model per objective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.rewards.scorers.base import BatchMemo, ModelCache, Scorer, register_scorer
from moalign.tags import MAX


def load_multihead_model(path: str) -> Any:
    """``moalign.rm.load(path)``: a model with ``.dimensions`` and ``.score(prompts, responses, batch_size=)``."""
    from moalign.rm import load

    return load(path)


class SharedMultiHead:
    """One loaded multi-head reward model whose scores are memoised per batch."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.dimensions: dict[str, int] = dict(model.dimensions)
        self.memo = BatchMemo()

    def score(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int) -> Any:
        """The model's ``RMScores`` for this batch (``.probs[dim] [B, N]``, ``.expected[dim] [B]``)."""
        return self.memo(
            prompts, completions, lambda: self.model.score(list(prompts), list(completions), batch_size=batch_size)
        )


class MultiheadConfig(StrictModel):
    model: str
    """Directory of a multi-head reward model (the ``reward_model`` stage's output)."""
    dimension: str
    """The head to read."""
    output: Literal["expected", "target_probability"] = "expected"
    target: int | Literal["max"] | None = None
    """For ``target_probability``: a fixed intensity (``max`` = the top one); default: the prompt's tag."""
    batch_size: int = Field(8, ge=1)


def _target(config: MultiheadConfig, tags: Mapping[str, int], n: int, sample: int) -> int | None:
    target = config.target if config.target is not None else tags.get(config.dimension)
    if target is None:
        return None
    if target == MAX:
        return n
    if not 1 <= int(target) <= n:
        raise UserError(
            f"sample {sample}: target intensity {target} for dimension '{config.dimension}' is outside the "
            f"reward model's intensities 1..{n}"
        )
    return int(target)


@register_scorer("multihead", MultiheadConfig, partial=True)
def build_multihead(config: MultiheadConfig, *, models: ModelCache) -> Scorer:
    """Score = expected intensity, or probability of the target intensity, of one dimension."""
    shared = models.get(("multihead", config.model), lambda: SharedMultiHead(load_multihead_model(config.model)))
    if config.dimension not in shared.dimensions:
        known = ", ".join(shared.dimensions)
        raise UserError(f"reward model '{config.model}' has no dimension '{config.dimension}'; it has {known}")
    n = shared.dimensions[config.dimension]

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        result = shared.score(prompts, completions, config.batch_size)
        if config.output == "expected":
            return [float(v) for v in result.expected[config.dimension].tolist()]
        probs = result.probs[config.dimension]
        tags = columns.get("tags") or [{} for _ in prompts]
        out = []
        for i, sample_tags in enumerate(tags):
            target = _target(config, sample_tags, n, i)
            out.append(math.nan if target is None else float(probs[i, target - 1]))
        return out

    return score
