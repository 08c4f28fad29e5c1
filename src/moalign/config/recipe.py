"""The recipe: a YAML mapping of run-level keys, objectives and an ordered list of stages.

```yaml
name: demo
seed: 0
model: builtin:smollm2-135m-instruct
objectives:
  - {name: constraints, scorer: verifier, weight: 1.0}
  - name: concise
    scorer: {length: {unit: words, target: 60, penalty: over}}
    weight: 0.01
    tag_dimension: brevity      # applies only to prompts tagged <brevity n>
aggregator: weighted_sum        # or {soft_chebyshev: {tau: 0.1}}, {moslim: {k: all}}, ...
tag_dimensions: {helpfulness: [1, 5], brevity: [1, 5], structure: [1, 5]}
stages:
  - sft: {dataset: builtin:..., learning_rate: 2.0e-5}
  - dpo: {beta: 0.1}
```
Each stage item is a one-key mapping from a registered stage type to that stage's typed config;
an objective's ``scorer`` and the ``aggregator`` are plug-in entries of the same shape, validated
against the scorer and aggregator registries (imported on first use, so this module stays light).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_serializer

from moalign.config.base import StrictModel, unknown_key_hint
from moalign.config.yaml_source import Loc, YamlSource, apply_override, load_yaml
from moalign.errors import UserError
from moalign.precision import Precision, stage_bf16
from moalign.registry import Registry, did_you_mean
from moalign.tags import DEFAULT_TAG_DIMENSIONS, IntensityRange, check_dimensions


class PluginSpec(BaseModel):
    """A validated plug-in entry (a scorer, an aggregator): its registered name and typed config.

    It serialises back to the recipe form ``{name: {config}}``.
    """

    model_config = ConfigDict(frozen=True)

    type: str
    config: SerializeAsAny[StrictModel]

    @model_serializer(mode="plain")
    def _as_entry(self) -> dict[str, Any]:
        return {self.type: self.config.model_dump(mode="json")}


def _scorers() -> Registry[Any]:
    from moalign.rewards.scorers import SCORERS

    return SCORERS


def _aggregators() -> Registry[Any]:
    from moalign.rewards.aggregators import AGGREGATORS

    return AGGREGATORS


def plugin_spec(registry: Registry[Any], raw: Any) -> PluginSpec:
    """``raw`` (a name or ``{name: {config}}``) as a :class:`PluginSpec`; ``ValueError`` if invalid."""
    if isinstance(raw, PluginSpec):
        return raw
    problems: list[tuple[Loc, str]] = []
    checked = validate_plugin(registry, raw, (), problems)
    if checked is None:
        raise ValueError("; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in problems))
    return PluginSpec(type=checked[0], config=checked[1])


class ObjectiveConfig(StrictModel):
    """One objective: a named score with its scorer and its place in the aggregate.

    ```yaml
    - name: fluency
      scorer: {classifier: {model: ./disfluency-bert, label: disfluent, complement: true}}
      weight: 1.0
      ideal: 1.0            # for gap_to_ideal / chebyshev / soft_chebyshev
      normalize: group      # z-score within each prompt's group before aggregating
      tag_dimension: null   # if set, the objective applies only to prompts tagged with it
    ```
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    scorer: PluginSpec
    """A registered scorer name, or a one-key mapping ``{scorer_name: {its config}}``."""
    weight: float = 1.0
    ideal: float | None = None
    """The score this objective aims at (distance-based aggregators)."""
    normalize: Literal["batch", "group"] | None = None
    """z-score this objective over the batch, or within each prompt group, before aggregating."""
    tag_dimension: str | None = None
    """A declared tag dimension: the objective applies only to prompts whose tags name it."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _validate_scorer(cls, raw: Any) -> PluginSpec:
        return plugin_spec(_scorers(), raw)


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
    aggregator: PluginSpec = Field(default_factory=lambda: plugin_spec(_aggregators(), "weighted_sum"))
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
        return plugin_spec(_aggregators(), raw)

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


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _describe(error: dict[str, Any], root: type[BaseModel]) -> tuple[Loc, str]:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return loc, unknown_key_hint(root, loc)
    msg = error["msg"]
    if error["type"] not in ("missing",) and not isinstance(error.get("input"), dict | list):
        msg += f" (got {error['input']!r})"
    return loc, msg


def validate_plugin(
    registry: Registry[Any], raw: Any, loc: Loc, problems: list[tuple[Loc, str]]
) -> tuple[str, StrictModel] | None:
    """Validate a plug-in entry: a registered name, or ``{name: {config}}``; its config is typed.

    The registry's items carry a ``config_cls``. Problems are appended with their key path.
    """
    if isinstance(raw, str):
        name, body = raw, {}
    elif isinstance(raw, dict) and len(raw) == 1:
        name, body = next(iter(raw.items()))
        body = {} if body is None else body
    else:
        problems.append((loc, f"expected a {registry.kind} name or a one-key mapping {{name: {{config}}}}"))
        return None
    if name not in registry:
        known = ", ".join(registry.names()) or "none"
        problems.append(
            ((*loc, name), f"unknown {registry.kind} '{name}'{did_you_mean(name, registry.names())}; known: {known}")
        )
        return None
    cls = registry.get(name).config_cls
    try:
        return name, cls.model_validate(body)
    except ValidationError as exc:
        for err in exc.errors():
            sub, msg = _describe(err, cls)
            problems.append(((*loc, name, *sub), msg))
        return None


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
        checked = validate_plugin(_aggregators(), data["aggregator"], ("aggregator",), problems)
        checked_data["aggregator"] = _spec(checked)
    recipe = None
    try:
        recipe = Recipe.model_validate(checked_data)
    except ValidationError as exc:
        problems.extend(_describe(err, Recipe) for err in exc.errors())
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
    return {**raw, "scorer": _spec(validate_plugin(_scorers(), raw["scorer"], (*loc, "scorer"), problems))}


def objective_problems(
    objectives: list[ObjectiveConfig], aggregator_spec: PluginSpec, dims: dict[str, IntensityRange]
) -> list[tuple[Loc, str]]:
    """Checks across keys: unique names, declared tag dimensions, what the aggregator needs."""
    problems: list[tuple[Loc, str]] = []
    aggregator = _aggregators().get(aggregator_spec.type)
    seen: dict[str, int] = {}
    tagged: dict[str, int] = {}
    for i, obj in enumerate(objectives):
        loc: Loc = ("objectives", i)
        if obj.name in seen:
            problems.append(
                ((*loc, "name"), f"objective name '{obj.name}' is already used by objectives[{seen[obj.name]}]")
            )
        seen.setdefault(obj.name, i)
        if obj.tag_dimension is not None and obj.tag_dimension not in dims:
            known = ", ".join(dims) or "none"
            problems.append(
                (
                    (*loc, "tag_dimension"),
                    f"tag dimension '{obj.tag_dimension}' is not declared in tag_dimensions"
                    f"{did_you_mean(obj.tag_dimension, list(dims))}; declared: {known}",
                )
            )
        if aggregator.needs_ideals and obj.ideal is None:
            problems.append(
                ((*loc, "ideal"), f"aggregator '{aggregator.name}' needs an ideal value for every objective")
            )
        if aggregator.needs_tags and obj.tag_dimension is not None:
            if obj.tag_dimension in tagged:
                first = tagged[obj.tag_dimension]
                problems.append(
                    (
                        (*loc, "tag_dimension"),
                        f"tag dimension '{obj.tag_dimension}' is already scored by objectives[{first}]",
                    )
                )
            else:
                tagged[obj.tag_dimension] = i
            if obj.weight != 1.0:
                problems.append(((*loc, "weight"), f"aggregator '{aggregator.name}' (seed 002, eq. 11) has no weights"))
    if aggregator.needs_tags and objectives and not tagged:
        problems.append(
            (("objectives",), f"aggregator '{aggregator.name}' needs at least one objective with a tag_dimension")
        )
    return problems


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
