"""The base of every typed config: unknown keys are errors, with a did-you-mean hint."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict

from moalign.registry import did_you_mean


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys (see :func:`unknown_key_hint` for the message)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config class that validates the mapping at key path ``loc`` under ``root``, if known."""
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue  # list index: the item type was already taken from the field's annotation
        field = current.model_fields.get(part)
        if field is None:
            return None
        found = _models_in(field.annotation)
        current = found[0] if found else None
    return current


def unknown_key_hint(root: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """``"unknown key (did you mean 'x'?)"`` for the last key of ``loc``."""
    parent = model_at(root, loc[:-1])
    known = set(parent.model_fields) if parent is not None else set()
    return f"unknown key{did_you_mean(str(loc[-1]), known)}"
