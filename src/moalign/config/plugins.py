"""Plug-in entries (a scorer, an aggregator, a stage): a registered name and its typed config.

In YAML an entry is a name or a one-key mapping ``{name: {config}}``; :func:`validate_plugin` checks it
against a :class:`~moalign.registry.Registry` whose items carry a ``config_cls`` and reports every
problem with its key path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationError, model_serializer

from moalign.config.base import StrictModel, unknown_key_hint
from moalign.config.yaml_source import Loc
from moalign.registry import Registry, did_you_mean


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


def plugin_spec(registry: Registry[Any], raw: Any) -> PluginSpec:
    """``raw`` (a name or ``{name: {config}}``) as a :class:`PluginSpec`; ``ValueError`` if invalid."""
    if isinstance(raw, PluginSpec):
        return raw
    problems: list[tuple[Loc, str]] = []
    checked = validate_plugin(registry, raw, (), problems)
    if checked is None:
        raise ValueError("; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in problems))
    return PluginSpec(type=checked[0], config=checked[1])


def format_loc(loc: Loc) -> str:
    """A key path as written in messages: ``objectives[0].scorer``; ``<root>`` for the empty path."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def describe_error(error: dict[str, Any], root: type[BaseModel]) -> tuple[Loc, str]:
    """One pydantic error as ``(key path, message)``; an unknown key gets a did-you-mean hint."""
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
            sub, msg = describe_error(err, cls)
            problems.append(((*loc, name, *sub), msg))
        return None
