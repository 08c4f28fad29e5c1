"""The ``brevity`` and ``structure`` scorers: how well a completion matches the requested intensity.

The requested intensity comes from the ``tag_<dimension>`` column (or a column named after the
dimension, or a ``tags`` column: see :func:`moalign.data.dimensions.requested_intensity`). With
``output: match`` (default) the score is the dimension's match in [0, 1], NaN where the prompt did not
ask for the dimension. With ``output: level`` the score is the intensity the completion shows (1-5)
for every sample, requested or not: the y-axis of a controllability curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from moalign.config.base import StrictModel
from moalign.data.dimensions import DIMENSIONS, Dimension, requested_intensity
from moalign.rewards.scorers.base import register_scorer
from moalign.tags import tag_column


class DimensionScorerConfig(StrictModel):
    """``output``: ``match`` (score in [0, 1] against the request) or ``level`` (the measured intensity)."""

    output: Literal["match", "level"] = "match"


def dimension_scores(
    dimension: Dimension, completions: Sequence[str], columns: dict[str, Sequence[Any]], output: str = "match"
) -> list[float]:
    """Per completion: the measured level, or the match to the requested intensity (NaN if none requested)."""
    if output == "level":
        return [float(dimension.measure(c)) for c in completions]
    keys = [k for k in (tag_column(dimension.name), dimension.name, "tags") if k in columns]
    out: list[float] = []
    for i, completion in enumerate(completions):
        requested = requested_intensity(dimension.name, {k: columns[k][i] for k in keys})
        out.append(float("nan") if requested is None else dimension.match(completion, requested))
    return out


def _builder(dimension: Dimension) -> Any:
    def build(config: DimensionScorerConfig) -> Any:
        def scorer(prompts: Sequence[str], completions: Sequence[str], **columns: Sequence[Any]) -> list[float]:
            return dimension_scores(dimension, completions, columns, config.output)

        scorer.__name__ = dimension.name
        return scorer

    build.__name__ = f"build_{dimension.name}"
    return build


for _dimension in DIMENSIONS.values():
    register_scorer(_dimension.name, DimensionScorerConfig, partial=True)(_builder(_dimension))
