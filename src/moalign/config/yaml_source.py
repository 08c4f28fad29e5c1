"""YAML loading that remembers where every key came from (file and line), for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moalign.errors import UserError, decode_utf8

Loc = tuple[str | int, ...]


@dataclass
class YamlSource:
    """Parsed YAML data plus the source line of each key path (``("stages", 0, "sft")`` -> 7)."""

    data: Any
    name: str
    lines: dict[Loc, int] = field(default_factory=dict)
    overridden: dict[Loc, str] = field(default_factory=dict)

    def where(self, loc: Loc) -> str:
        """``file:line`` (or ``--set key=value``) for the deepest known prefix of ``loc``."""
        for end in range(len(loc), -1, -1):
            prefix = tuple(loc[:end])
            if prefix in self.overridden:
                return f"--set {self.overridden[prefix]}"
            if prefix in self.lines:
                return f"{self.name}:{self.lines[prefix]}"
        return self.name


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], name: str) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise UserError(f"duplicate key '{key}'", source=f"{name}:{key_node.start_mark.line + 1}")
            seen.add(key)
            _walk(value_node, (*loc, key), lines, name)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, name)


def parse_yaml(text: str, name: str) -> YamlSource:
    """Parse YAML text; syntax errors and duplicate keys become :class:`UserError` with a line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} started at line {exc.context_mark.line + 1})"
        raise UserError(f"invalid YAML: {exc.problem}{context}", source=f"{name}{line}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines, name)
    return YamlSource(data=data, name=name, lines=lines)


def load_yaml(path: str | Path) -> YamlSource:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", source=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc}", source=str(path)) from None
    return parse_yaml(decode_utf8(data, str(path)), str(path))


def parse_override(expr: str) -> tuple[Loc, Any]:
    """``"stages.0.sft.learning_rate=1e-5"`` -> ``(("stages", 0, "sft", "learning_rate"), "1e-5")``; typed configs turn
    such strings into floats.

    The value is parsed as YAML, so ``true``, ``3``, ``[a, b]`` and ``{k: v}`` have their YAML types.
    """
    key, sep, raw = expr.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects KEY=VALUE, got '{expr}'")
    loc = tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split("."))
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        raise UserError(f"--set {expr}: value is not valid YAML") from None
    return loc, value


def apply_override(source: YamlSource, expr: str) -> None:
    """Set one ``KEY=VALUE`` override in ``source.data``, creating missing mappings on the way."""
    loc, value = parse_override(expr)
    if source.data is None:
        source.data = {}
    node = source.data
    for depth, part in enumerate(loc[:-1]):
        nxt = loc[depth + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise UserError(f"--set {expr}: index {part} is out of range at {_dotted(loc[:depth])}")
            node = node[part]
        elif isinstance(node, dict):
            key = str(part)
            if key not in node or node[key] is None:
                node[key] = [] if isinstance(nxt, int) else {}
            node = node[key]
        else:
            raise UserError(f"--set {expr}: '{_dotted(loc[:depth])}' is not a mapping or list")
    last = loc[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not -len(node) <= last < len(node):
            raise UserError(f"--set {expr}: index {last} is out of range")
        node[last] = value
    elif isinstance(node, dict):
        node[str(last)] = value
    else:
        raise UserError(f"--set {expr}: '{_dotted(loc[:-1])}' is not a mapping or list")
    normalised = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    source.overridden[normalised] = expr


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "<root>"
