"""Rating labels for the multi-head reward model: scores and measured levels binned into intensity classes.

A rating record is ``{"prompt": str, "response": str, "ratings": {dimension: intensity or None}}`` with
intensities ``1..num_classes`` (None: the dimension does not apply to this sample). The prompt is the
one without preference tags: the reward model never sees tags (seed 002, "prompt alignment").

Seed 002 (Appendix B, Table 5) trains on four "DataTypes" that differ only in how finely a 1-5 score is
cut into classes (2, 3 or 5 classes per dimension). :func:`bin_score` cuts a score in ``[low, high]``
into ``num_classes`` equal-width classes; :func:`rebin_level` maps a 1-5 level onto fewer classes the
same way, so ``num_classes=5`` is DataType 4 and ``num_classes=2`` is DataType 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def bin_score(score: float | None, num_classes: int, low: float = 0.0, high: float = 1.0) -> int | None:
    """The class ``1..num_classes`` of ``score`` in equal-width bins of ``[low, high]``; None for NaN/None.

    >>> [bin_score(s, 5) for s in (0.0, 0.19, 0.2, 0.99, 1.0)]
    [1, 1, 2, 5, 5]
    """
    if num_classes < 1 or not high > low:
        raise ValueError("need num_classes >= 1 and high > low")
    if score is None or math.isnan(score):
        return None
    fraction = (min(max(score, low), high) - low) / (high - low)
    return min(num_classes, 1 + math.floor(fraction * num_classes))


def rebin_level(level: int | None, num_levels: int, num_classes: int) -> int | None:
    """A level ``1..num_levels`` as one of ``num_classes`` equal-width classes (identity when equal).

    >>> [rebin_level(v, 5, 2) for v in (1, 2, 3, 4, 5)]
    [1, 1, 2, 2, 2]
    """
    if level is None:
        return None
    if not 1 <= level <= num_levels:
        raise ValueError(f"level {level} outside 1..{num_levels}")
    if num_classes == num_levels:
        return level
    return bin_score((level - 0.5) / num_levels, num_classes)


def rating_record(prompt: str, response: str, ratings: Mapping[str, int | None], **extra: Any) -> dict[str, Any]:
    """One reward-model training record (``extra`` keys, e.g. an id, are kept alongside)."""
    for name, value in ratings.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"rating for '{name}' must be a positive int or None, got {value!r}")
    return {"prompt": prompt, "response": response, "ratings": dict(ratings), **extra}


def parse_rating(value: Any) -> float | None:
    """A rating from a dataset cell: a number, a numeric string (UltraFeedback's ``"4"``) or missing.

    ``None``, ``""``, ``"N/A"`` and NaN are missing; anything else non-numeric is a ``ValueError``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"rating {value!r} is not a number")
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "n/a", "na", "none", "null"):
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"rating {value!r} is not a number") from None
        return int(number) if number == int(number) else number
    raise ValueError(f"rating {value!r} is not a number")
