"""The recipe: a YAML mapping of run-level keys, objectives and an ordered list of stages.

```yaml
name: demo
seed: 0
model: builtin:smollm2-135m-instruct
objectives:
  - {name: constraints, scorer: verifier, weight: 1.0}
stages:
  - sft: {dataset: builtin:..., learning_rate: 2.0e-5}
  - dpo: {beta: 0.1}
```
Each stage item is a one-key mapping from a registered stage type to that stage's typed config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from moalign.config.base import StrictModel, unknown_key_hint
from moalign.config.yaml_source import Loc, YamlSource, apply_override, load_yaml
from moalign.errors import UserError
from moalign.registry import Registry, did_you_mean


class ObjectiveConfig(StrictModel):
    """One objective: a named score with its scorer and its place in the aggregate."""

    name: str
    scorer: str | dict[str, Any]
    """A registered scorer name, or a one-key mapping ``{scorer_name: {its config}}``."""
    weight: float = 1.0
    ideal: float | None = None
    normalize: str | None = None
    tag_dimension: str | None = None


class StageSpec(BaseModel):
    """A validated stage entry: its registered type and its typed config."""

    model_config = ConfigDict(frozen=True)

    type: str
    config: SerializeAsAny[StrictModel]


class Recipe(StrictModel):
    """A whole run: run-level keys, objectives and stages (validated against the stage registry)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    model: str = "builtin:smollm2-135m-instruct"
    output_dir: str = "runs"
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    stages: list[StageSpec] = Field(default_factory=list)

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
    recipe = None
    try:
        recipe = Recipe.model_validate({**data, "stages": []})
    except ValidationError as exc:
        problems.extend(_describe(err, Recipe) for err in exc.errors())
    specs: list[StageSpec] = []
    for i, raw in enumerate(raw_stages):
        checked = validate_plugin(STAGES, raw, ("stages", i), problems)
        if checked is not None:
            specs.append(StageSpec(type=checked[0], config=checked[1]))
    if problems:
        lines = [f"  {source.where(loc)}: {format_loc(loc)}: {msg}" for loc, msg in problems]
        raise RecipeError("invalid recipe\n" + "\n".join(lines), source=source.name)
    assert recipe is not None
    return recipe.model_copy(update={"stages": specs})


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override (``--set a.b=c``) and validate a recipe file."""
    source = load_yaml(path)
    for expr in overrides:
        apply_override(source, expr)
    return validate_recipe(source)
