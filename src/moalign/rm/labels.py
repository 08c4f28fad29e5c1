"""Ratings -> intensity classes: seed 002's DataType 1-4 presets and custom bin specs.

A head for a dimension with ``n`` classes predicts an intensity in ``1..n`` (seed 002 writes it
as the tag ``<dimension n>``). Source datasets rate on other scales: UltraFeedback rates
helpfulness and honesty 1 to 5, UltraSafety labels harmlessness 0 (harmful) or 1 (harmless).
A :class:`Bins` maps one such rating to a class.

**Our reading of seed 002, appendix B, table 5.** The table lists per DataType the tags
that exist, and a "Categories" column of 4, 8, 18 and 50:

========  =============================  ==========  ==========================================
DataType  tags in table 5                categories  classes (helpfulness / honesty / harmless)
========  =============================  ==========  ==========================================
1         helpfulness 1, honesty 1,      4           2 / 2 / 2 (see below)
          harmless 1 to 2
2         1 to 2, 1 to 2, 1 to 2         8 = 2*2*2   2 / 2 / 2
3         1 to 3, 1 to 3, 1 to 2         18 = 3*3*2  3 / 3 / 2
4         1 to 5, 1 to 5, 1 to 2         50 = 5*5*2  5 / 5 / 2
========  =============================  ==========  ==========================================

DataTypes 2 to 4 are unambiguous: the categories are the product of the class counts. DataType 1
is not: the text says it "simplified [the dimension] to two categories, removing the need to
predict preference intensity and focusing solely on preference classification", while the table
lists a single helpfulness and honesty tag and 4 categories, which fits no product of class counts
(a one-class head would learn nothing). We read DataType 1 as *binary preference classification
on clear cases*: ratings 1-2 are class 1, ratings 4-5 class 2, and the undecided middle rating 3
is left unlabelled (masked in the loss), which is what tells it apart from DataType 2, where
every rating gets a class. DataTypes 2 and 3 cut the 1-5 scale into equal-width bins, as
:func:`moalign.data.ratings.rebin_level` does for the offline task suite (1-2 / 3-5 and
1-2 / 3 / 4-5); DataType 4 keeps the five ratings. Harmless is binary in all four: UltraSafety's
0 -> 1, 1 -> 2 (any score in [0, 1], split at 0.5).
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
    # seed 002, appendix B, table 5 (see the module docstring for how we read DataType 1)
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
