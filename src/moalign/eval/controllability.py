"""Controllability of preference intensity (seed 002, figures 5 and 6).

**Sweep** (figure 5): each tag dimension at each requested intensity on the same base prompts; per intensity
the mean and spread of the measured level, per dimension the Spearman correlation of requested against
measured. Reading taken: Spearman over samples (the paper plots means), which also penalises spread.
**Pairs** (figure 6): each pair of dimensions at every combination of their lowest and highest intensities;
the measured level of every swept dimension under each is one polygon of a radar chart.

Reading notes: docs/papers.md#evalcontrollabilitypy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator

from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, plugin_spec
from moalign.correlation import spearman
from moalign.eval.generations import GenerationCache, cached_generate
from moalign.eval.metrics import length_stats
from moalign.generation import BATCH_SIZE, SamplingConfig
from moalign.tags import DEFAULT_TAG_DIMENSIONS, TagDimensions, format_tags, parse_tags


class ControllabilityConfig(StrictModel):
    """Keys of a controllability evaluation (``controllability:`` under an eval config)."""

    dimensions: list[str] = Field(default_factory=lambda: ["brevity", "structure"])
    """Tag dimensions to sweep; each needs a scorer of the same name with an ``output: level`` mode."""
    intensities: list[int] | None = None
    """Requested intensities (default: the dimension's whole range from ``tag_dimensions``)."""
    num_prompts: int = Field(8, ge=1)
    """Base prompts (the evaluation set's first prompts, their own tags removed)."""
    dataset: str | None = None
    """Where the base prompts come from (default: the evaluation's own prompts). A prompt that brings its
    own length or layout constraint fights the tags; the tagged suite's prompts (``builtin:ifeval-lite-tagged``)
    carry none."""
    split: str = "test"
    """The split of ``dataset``."""
    pairs: bool = True
    """Also evaluate every low/high combination for each pair of dimensions (the radar chart)."""
    models: list[str] | None = None
    """Labels of the evaluated models to sweep (``reference`` is the base model); default: all of them."""
    measure: dict[str, PluginSpec] = Field(default_factory=dict)
    """Per dimension, the scorer that measures its level, e.g. seed 002's reward model:
    ``{helpfulness: {multihead: {model: stage:reward_model/model, dimension: helpfulness}}}`` (the expected
    intensity). Default: the scorer named after the dimension, in ``output: level`` mode."""

    @field_validator("measure", mode="before")
    @classmethod
    def _validate_measure(cls, raw: Any) -> Any:
        from moalign.rewards import SCORERS

        return {d: plugin_spec(SCORERS, spec) for d, spec in raw.items()} if isinstance(raw, dict) else raw


def level_reward(
    dimensions: Sequence[str], tag_dimensions: TagDimensions | None = None, measure: Mapping[str, Any] | None = None
) -> Any:
    """A reward whose objectives are the measured level of each dimension (``measure[d]``, or the scorer
    named ``d`` in ``output: level`` mode)."""
    from moalign.errors import UserError
    from moalign.rewards import SCORERS, MultiObjectiveReward

    measure = measure or {}
    for d in dimensions:
        if d in measure:
            continue
        if d not in SCORERS or "output" not in SCORERS.get(d).config_cls.model_fields:
            raise UserError(
                f"controllability: dimension '{d}' has no scorer with a measured-level mode; name one in "
                f"controllability.measure.{d}"
            )
    objectives = [{"name": d, "scorer": measure.get(d) or {d: {"output": "level"}}} for d in dimensions]
    return MultiObjectiveReward(objectives, "weighted_sum", tag_dimensions=tag_dimensions)


def base_prompts(prompts: Sequence[str], num: int, tag_dimensions: TagDimensions | None = None) -> list[str]:
    """The first ``num`` distinct prompts with their own preference tags removed."""
    stripped = [parse_tags(p, tag_dimensions)[0].strip() for p in prompts]
    return list(dict.fromkeys(stripped))[:num]


def intensity_curve(requested: Sequence[int], measured: Sequence[float]) -> dict[str, Any]:
    """Per requested intensity: mean, std and count of the measured levels; plus Spearman over all samples."""
    points = []
    for n in sorted(set(requested)):
        values = [m for r, m in zip(requested, measured, strict=True) if r == n]
        stats = length_stats(values)
        points.append({"intensity": n, "mean": stats["mean"], "std": stats["std"], "n": len(values)})
    rho = spearman([float(r) for r in requested], [float(m) for m in measured])
    return {"points": points, "spearman": None if rho != rho else rho}


def controllability(
    spec: str,
    prompts: Sequence[str],
    config: ControllabilityConfig,
    sampling: SamplingConfig,
    *,
    cache: GenerationCache | None,
    tag_dimensions: TagDimensions | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    bf16: bool | None = None,
) -> dict[str, Any]:
    """Sweeps (each dimension at each intensity, figure 5) and pairs (two dimensions at their lowest and
    highest intensities, figure 6) for model ``spec``, generated in one pass.

    Returns ``{"sweeps": {dim: {"points": [...], "spearman": rho}}, "pairs": [{"dimensions": [d1, d2],
    "combinations": [{"tags": {d1: lo, d2: hi}, "scores": {d: mean for every swept d}}, ...]}], "samples":
    [{"group", "tags", "prompt", "response", "levels"}, ...]}`` (``samples``: every generated response with
    the levels measured in it, in job order).
    """
    dims = dict(DEFAULT_TAG_DIMENSIONS if tag_dimensions is None else tag_dimensions)
    reward = level_reward(config.dimensions, dims, config.measure)
    texts = base_prompts(prompts, config.num_prompts, dims)
    jobs: list[tuple[str, dict[str, int], str]] = []  # (group, tags, text)
    for d in config.dimensions:
        low, high = dims[d]
        for n in config.intensities or range(low, high + 1):
            jobs += [(f"sweep:{d}", {d: n}, t) for t in texts]
    pairs = list(itertools.combinations(config.dimensions, 2)) if config.pairs else []
    for d1, d2 in pairs:
        for a, b in itertools.product((dims[d1][0], dims[d1][1]), (dims[d2][0], dims[d2][1])):
            jobs += [(f"pair:{d1}:{d2}", {d1: a, d2: b}, t) for t in texts]
    tagged = [format_tags(tags, text) for _, tags, text in jobs]
    run = cached_generate(
        spec,
        tagged,
        sampling,
        cache=cache,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        desc="control",
        bf16=bf16,
    )
    matrix = reward.score(tagged, [r.text for r in run.responses])
    levels = {d: matrix.column(d).tolist() for d in config.dimensions}

    sweeps = {}
    for d in config.dimensions:
        rows = [i for i, (g, _, _) in enumerate(jobs) if g == f"sweep:{d}"]
        sweeps[d] = intensity_curve([jobs[i][1][d] for i in rows], [levels[d][i] for i in rows])
    pair_results = []
    for d1, d2 in pairs:
        combos: dict[tuple[int, int], list[int]] = {}
        for i, (g, tags, _) in enumerate(jobs):
            if g == f"pair:{d1}:{d2}":
                combos.setdefault((tags[d1], tags[d2]), []).append(i)
        pair_results.append(
            {
                "dimensions": [d1, d2],
                "combinations": [
                    {
                        "tags": {d1: a, d2: b},
                        "scores": {d: sum(levels[d][i] for i in rows) / len(rows) for d in config.dimensions},
                    }
                    for (a, b), rows in combos.items()
                ],
            }
        )
    samples = [
        {"group": g, "tags": tags, "prompt": p, "response": r.text, "levels": {d: levels[d][i] for d in levels}}
        for i, ((g, tags, _), p, r) in enumerate(zip(jobs, tagged, run.responses, strict=True))
    ]
    return {"num_prompts": len(texts), "sweeps": sweeps, "pairs": pair_results, "samples": samples}
