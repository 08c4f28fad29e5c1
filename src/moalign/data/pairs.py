"""Best-of-n: the best response per prompt (SFT) and best-versus-worst preference pairs.

Scores are one total per sampled response; NaN means the response could not be scored and is left out.
Ties go to the earliest sample for the best and the latest for the worst, so the choice is deterministic.
A pair needs a margin of at least ``min_margin`` (and above 0) and two different texts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PreferencePair:
    """Indices of the chosen (best) and rejected (worst) samples of one prompt, and their score margin."""

    chosen: int
    rejected: int
    margin: float


def best_index(scores: Sequence[float]) -> int | None:
    """Index of the highest score (earliest on ties); None if every score is NaN."""
    valid = [(s, -i) for i, s in enumerate(scores) if not math.isnan(s)]
    return -max(valid)[1] if valid else None


def worst_index(scores: Sequence[float]) -> int | None:
    """Index of the lowest score (latest on ties); None if every score is NaN."""
    valid = [(s, -i) for i, s in enumerate(scores) if not math.isnan(s)]
    return -min(valid)[1] if valid else None


def best_worst_pair(
    completions: Sequence[str],
    scores: Sequence[float],
    min_margin: float = 0.0,
    chosen_scores: Sequence[float] | None = None,
) -> PreferencePair | None:
    """The best-versus-worst pair of one prompt's samples, or None if the margin or the texts do not allow one.

    ``chosen_scores`` (default ``scores``): the scores the chosen sample is picked by, NaN for samples that
    may not be chosen (e.g. truncated ones); the rejected one is the worst of all ``scores``.
    """
    if len(completions) != len(scores):
        raise ValueError("one score per completion")
    best, worst = best_index(scores if chosen_scores is None else chosen_scores), worst_index(scores)
    if best is None or worst is None:
        return None
    margin = scores[best] - scores[worst]
    if margin <= 0 or margin < min_margin or completions[best].strip() == completions[worst].strip():
        return None
    return PreferencePair(chosen=best, rejected=worst, margin=margin)


def level_distance(a: Mapping[str, int], b: Mapping[str, int]) -> int:
    """L1 distance between two samples' measured levels, over ``a``'s dimensions."""
    return sum(abs(b[d] - a[d]) for d in a)


def farthest_index(levels: Sequence[Mapping[str, int]], anchor: int, scores: Sequence[float]) -> int | None:
    """The sample whose measured levels are farthest (L1) from sample ``anchor``'s, ties to the lower score
    then the later sample; None if every other sample measures the same levels (no contrast to learn)."""

    def distance(i: int) -> int:
        return level_distance(levels[anchor], levels[i])

    others = [i for i in range(len(levels)) if i != anchor and distance(i) > 0]
    if not others:
        return None
    low = [-s if not math.isnan(s) else math.inf for s in scores]
    return max(others, key=lambda i: (distance(i), low[i], i))
