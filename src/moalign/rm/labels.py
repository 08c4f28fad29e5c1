"""Ratings -> intensity classes: seed 002's DataType 1-4 presets and custom bin specs.

A head with ``n`` classes predicts an intensity in ``1..n`` (seed 002's tag ``<dimension n>``); a :class:`Bins`
maps a source rating (UltraFeedback 1-5, UltraSafety harmless 0/1) to a class. Presets (appendix B, table 5):
DataTypes 2 and 3 cut 1-5 into 2 and 3 equal-width bins, DataType 4 keeps the five ratings, harmless is binary
in all four. Reading taken for DataType 1 (its 4 "categories" fit no product of class counts): binary
preference on clear cases, ratings 1-2 class 1, 4-5 class 2, the middle rating 3 unlabelled.

Reading notes: docs/papers.md#rmlabelspy (table 5 and the DataType 1 reading in full).
"""

from __future__ import annotations

import bisect
import math
import re

from pydantic import Field, model_validator

from moalign.config.base import StrictModel
from moalign.errors import UserError


class Bins(StrictModel):
    """Map a raw rating in ``[low, high]`` to a class in ``1..len(edges)+1``.

    ``edges`` are inclusive upper bounds, ascending: ``rating <= edges[0]`` is class 1,
    ``edges[0] < rating <= edges[1]`` class 2, ..., ``rating > edges[-1]`` the last class.
    Ratings listed in ``drop`` are left unlabelled (``None``). With no edges the rating is
    already the class (an integer in ``low..high`` with ``low == 1``).
    """

    edges: list[float] = Field(default_factory=list)
    low: float = 1
    high: float = 5
    drop: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Bins:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges must be strictly ascending, got {self.edges}")
        if not self.edges and (self.low != 1 or self.high != int(self.high)):
            raise ValueError("without edges the ratings are the classes themselves: low must be 1, high an integer")
        return self

    @property
    def classes(self) -> int:
        return len(self.edges) + 1 if self.edges else int(self.high)

    def __call__(self, rating: float) -> int | None:
        """The class of ``rating`` (1-based) or ``None`` if it is dropped; ``ValueError`` if out of range."""
        if isinstance(rating, bool) or not isinstance(rating, int | float) or math.isnan(rating):
            raise ValueError(f"rating {rating!r} is not a number")
        if not self.low <= rating <= self.high:
            raise ValueError(f"rating {rating!r} is outside [{_num(self.low)}, {_num(self.high)}]")
        if rating in self.drop:
            return None
        if not self.edges:
            if rating != int(rating):
                raise ValueError(f"rating {rating!r} is not an integer class in 1..{self.classes}")
            return int(rating)
        return bisect.bisect_left(self.edges, rating) + 1


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def identity_bins(classes: int) -> Bins:
    """Ratings that already are classes ``1..classes``."""
    return Bins(low=1, high=classes)


_HARMLESS = Bins(edges=[0.5], low=0, high=1)
"""UltraSafety: 0 (harmful) -> 1, 1 (harmless) -> 2."""

DATATYPES: dict[str, dict[str, Bins]] = {
    # seed 002, appendix B, table 5; DataType 1 as we read it (docs/papers.md#rmlabelspy)
    "datatype1": {
        "helpfulness": Bins(edges=[2], low=1, high=5, drop=[3]),
        "honesty": Bins(edges=[2], low=1, high=5, drop=[3]),
        "harmless": _HARMLESS,
    },
    "datatype2": {
        "helpfulness": Bins(edges=[2], low=1, high=5),
        "honesty": Bins(edges=[2], low=1, high=5),
        "harmless": _HARMLESS,
    },
    "datatype3": {
        "helpfulness": Bins(edges=[2, 3], low=1, high=5),
        "honesty": Bins(edges=[2, 3], low=1, high=5),
        "harmless": _HARMLESS,
    },
    "datatype4": {
        "helpfulness": Bins(low=1, high=5),
        "honesty": Bins(low=1, high=5),
        "harmless": _HARMLESS,
    },
}


def preset_name(name: str) -> str | None:
    """``'DataType 3'``, ``'datatype_3'``, ``'datatype3'`` -> ``'datatype3'``; ``None`` if not a preset."""
    key = re.sub(r"[\s_-]", "", name).lower()
    return key if key in DATATYPES else None


def resolve_bins(dimensions: dict[str, int] | str | None, bins: dict[str, Bins] | None = None) -> dict[str, Bins]:
    """One :class:`Bins` per dimension, from a DataType preset, class counts and/or custom bins.

    - ``dimensions="datatype3"``: the preset (``bins`` may override some of its dimensions).
    - ``dimensions={"helpfulness": 5}``: ratings already are classes 1..5, unless ``bins`` says otherwise.
    - ``dimensions=None``: the dimensions are the keys of ``bins``.

    A custom bin spec whose class count disagrees with ``dimensions`` is a :class:`UserError`.
    """
    bins = dict(bins or {})
    if isinstance(dimensions, str):
        key = preset_name(dimensions)
        if key is None:
            raise UserError(
                f"dimensions: '{dimensions}' is neither a mapping of dimension -> classes nor a preset "
                f"({', '.join(DATATYPES)})"
            )
        return {**DATATYPES[key], **bins}
    if dimensions is None:
        if not bins:
            raise UserError("dimensions: give the dimensions (name -> classes or a DataType preset) or custom bins")
        return bins
    out: dict[str, Bins] = {}
    for name, classes in dimensions.items():
        if classes < 2:
            raise UserError(f"dimensions.{name}: a head needs at least 2 classes, got {classes}")
        if name in bins:
            if bins[name].classes != classes:
                raise UserError(
                    f"bins.{name}: the bins give {bins[name].classes} classes but dimensions.{name} is {classes}"
                )
            out[name] = bins[name]
        else:
            out[name] = identity_bins(classes)
    extra = sorted(set(bins) - set(out))
    if extra:
        raise UserError(f"bins: {', '.join(extra)} not among the dimensions ({', '.join(out)})")
    return out
