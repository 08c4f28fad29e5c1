"""The recipe: a YAML mapping of run-level keys, objectives and an ordered list of stages.

Each stage item is a one-key mapping from a registered stage type to that stage's typed config;
an objective's ``scorer`` and the ``aggregator`` are plug-in entries of the same shape, validated
against the scorer and aggregator registries. Loading a recipe imports :mod:`moalign.stages`, which
registers every built-in stage.

Notes: docs/papers.md#recipepy (an example recipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, describe_error, format_loc, plugin_spec, validate_plugin
from moalign.config.yaml_source import Loc, YamlSource, apply_override, load_yaml
from moalign.errors import UserError
from moalign.precision import Precision, stage_bf16
from moalign.registry import did_you_mean
from moalign.rewards.aggregators import AGGREGATORS
from moalign.rewards.objectives import ObjectiveConfig, objective_problems
from moalign.rewards.scorers import SCORERS
from moalign.tags import DEFAULT_TAG_DIMENSIONS, IntensityRange, check_dimensions


class StageSpec(BaseModel):
    """A validated stage entry: its registered type and its typed config."""

    model_config = ConfigDict(frozen=True)

    type: str
    config: SerializeAsAny[StrictModel]


class SweepConfig(StrictModel):
    """``sweep:``: one full run of the stages per weight vector (MORLHF, seed 002 eq. 1), into ``w0/``, ``w1/`` ...

    Each vector gives the objectives' weights, in the order the objectives are listed.
    """

    weights: list[list[float]] = Field(min_length=1)


class Recipe(StrictModel):
    """A whole run: run-level keys, objectives and stages (validated against the stage registry)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    model: str = "builtin:smollm2-135m-instruct"
    output_dir: str = "runs"
    trust_remote_code: bool = False
    """Let models of this run execute their own Python code (``auto_map``); off unless set here."""
    precision: Precision = "auto"
    """``auto``: each stage's ``bf16`` key decides (unset: bf16 autocast where the device runs it
    natively); ``fp32`` or ``bf16`` sets every stage's ``bf16`` key, overriding the stages' own
    (:mod:`moalign.precision`)."""
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    aggregator: PluginSpec = Field(default_factory=lambda: plugin_spec(AGGREGATORS, "weighted_sum"))
    """How the objectives' scores become one reward: a name or ``{name: {params}}``."""
    tag_dimensions: dict[str, IntensityRange] = Field(default_factory=lambda: dict(DEFAULT_TAG_DIMENSIONS))
    """Preference-tag dimensions and their intensity ranges, ``{name: [low, high]}``."""
    stages: list[StageSpec] = Field(default_factory=list)
    sweep: SweepConfig | None = None
    """Train one policy per objective-weight vector (see :class:`SweepConfig`)."""
    profiles: dict[str, list[str]] = Field(default_factory=dict)
    """Named sets of ``KEY=VALUE`` overrides (the ``--set`` syntax), applied by ``--profile NAME``."""

    @field_validator("aggregator", mode="before")
    @classmethod
    def _validate_aggregator(cls, raw: Any) -> PluginSpec:
        return plugin_spec(AGGREGATORS, raw)

    @field_validator("tag_dimensions", mode="after")
    @classmethod
    def _validate_tag_dimensions(cls, dims: dict[str, IntensityRange]) -> dict[str, IntensityRange]:
        return check_dimensions(dims)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        data["stages"] = [{s.type: s.config.model_dump(mode="json")} for s in self.stages]
        return yaml.safe_dump(data, sort_keys=False)




class RecipeError(UserError):
    """An invalid recipe; the message lists every problem with its file, line and key path."""




def validate_recipe(source: YamlSource) -> Recipe:
    """Validate parsed recipe data; raise one :class:`RecipeError` listing every problem."""
    from moalign.stages import STAGES

    data = source.data
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a YAML mapping", source=source.name)
    problems: list[tuple[Loc, str]] = []
    raw_stages = data.get("stages") or []
    if not isinstance(raw_stages, list):
        problems.append((("stages",), "expected a list of {stage_type: {config}} items"))
        raw_stages = []
    checked_data = {**data, "stages": []}
    raw_objectives = data.get("objectives")
    if isinstance(raw_objectives, list):
        checked_data["objectives"] = [
            _checked_objective(raw, ("objectives", i), problems) for i, raw in enumerate(raw_objectives)
        ]
    if "aggregator" in data:
        checked = validate_plugin(AGGREGATORS, data["aggregator"], ("aggregator",), problems)
        checked_data["aggregator"] = _spec(checked)
    recipe = None
    try:
        recipe = Recipe.model_validate(checked_data)
    except ValidationError as exc:
        problems.extend(describe_error(err, Recipe) for err in exc.errors())
    if recipe is not None and not problems:
        problems.extend(objective_problems(recipe.objectives, recipe.aggregator, recipe.tag_dimensions))
        problems.extend(sweep_problems(recipe))
    specs: list[StageSpec] = []
    for i, raw in enumerate(raw_stages):
        checked = validate_plugin(STAGES, raw, ("stages", i), problems)
        if checked is not None:
            specs.append(StageSpec(type=checked[0], config=checked[1]))
    if problems:
        lines = [f"  {source.where(loc)}: {format_loc(loc)}: {msg}" for loc, msg in problems]
        raise RecipeError("invalid recipe\n" + "\n".join(lines), source=source.name)
    assert recipe is not None
    return recipe.model_copy(update={"stages": [with_precision(spec, recipe.precision) for spec in specs]})


def with_precision(spec: StageSpec, precision: Precision) -> StageSpec:
    """``spec`` with its ``bf16`` key (if it has one) set by the run-level ``precision`` (:func:`stage_bf16`)."""
    if "bf16" not in type(spec.config).model_fields:
        return spec
    bf16 = stage_bf16(precision, spec.config.bf16)  # type: ignore[attr-defined]
    return spec.model_copy(update={"config": spec.config.model_copy(update={"bf16": bf16})})


def _spec(checked: tuple[str, StrictModel] | None) -> PluginSpec:
    # an invalid entry (already reported) gets a placeholder so that the rest is still checked
    return (
        PluginSpec(type="<invalid>", config=StrictModel())
        if checked is None
        else PluginSpec(type=checked[0], config=checked[1])
    )


def _checked_objective(raw: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    if not isinstance(raw, dict) or "scorer" not in raw:
        return raw  # the model reports what is wrong with it
    return {**raw, "scorer": _spec(validate_plugin(SCORERS, raw["scorer"], (*loc, "scorer"), problems))}




def sweep_problems(recipe: Recipe) -> list[tuple[Loc, str]]:
    """A sweep needs objectives, one weight per objective in each vector, and weights its aggregator accepts."""
    if recipe.sweep is None:
        return []
    if not recipe.objectives:
        return [(("sweep",), "a sweep sets the objectives' weights: the recipe needs objectives")]
    problems: list[tuple[Loc, str]] = []
    for i, vector in enumerate(recipe.sweep.weights):
        loc: Loc = ("sweep", "weights", i)
        if len(vector) != len(recipe.objectives):
            problems.append((loc, f"{len(vector)} weights for {len(recipe.objectives)} objectives"))
            continue
        weighted = [o.model_copy(update={"weight": w}) for o, w in zip(recipe.objectives, vector, strict=True)]
        for sub, msg in objective_problems(weighted, recipe.aggregator, recipe.tag_dimensions):
            problems.append((loc, f"{format_loc(sub)}: {msg}"))
    return problems


def load_recipe(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), profile: str | Sequence[str] | None = None
) -> Recipe:
    """Load a recipe file, apply its ``profile`` (if named; several are applied in order), then the
    ``--set a.b=c`` overrides; validate."""
    source = load_yaml(path)
    for name in [profile] if isinstance(profile, str) else list(profile or []):
        for expr in profile_overrides(source, name):
            apply_override(source, expr)
    for expr in overrides:
        apply_override(source, expr)
    return validate_recipe(source)


def profile_overrides(source: YamlSource, profile: str) -> list[str]:
    """The override list of ``profiles.<profile>`` in a parsed recipe."""
    profiles = source.data.get("profiles") if isinstance(source.data, dict) else None
    profiles = profiles if isinstance(profiles, dict) else {}
    if profile not in profiles:
        known = ", ".join(profiles) or "none"
        raise RecipeError(
            f"unknown profile '{profile}'{did_you_mean(profile, list(profiles))}; this recipe has: {known}",
            source=source.name,
        )
    exprs = profiles[profile]
    if not isinstance(exprs, list) or not all(isinstance(e, str) for e in exprs):
        where = source.where(("profiles", profile))
        raise RecipeError(f"profiles.{profile}: expected a list of 'KEY=VALUE' strings", source=where)
    return exprs
