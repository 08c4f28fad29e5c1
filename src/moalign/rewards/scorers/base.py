"""The scorer plug-in interface: a registered name, a typed config and a builder.

A scorer is a plain callable ``scorer(prompts, completions, **columns) -> list[float]`` (one score
per sample, NaN where the objective does not apply). Prompts reach it with preference tags
already stripped. It runs without gradients and batches internally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from moalign.config.base import StrictModel
from moalign.registry import Registry


class Scorer(Protocol):
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Sequence[Any]) -> list[float]:
        """One score per (prompt, completion); NaN where the objective does not apply."""
        ...


ScorerBuilder = Callable[[Any], Scorer]


@dataclass(frozen=True)
class ScorerDef:
    name: str
    config_cls: type[StrictModel]
    build: ScorerBuilder


SCORERS: Registry[ScorerDef] = Registry("scorer")


def register_scorer(name: str, config_cls: type[StrictModel]) -> Callable[[ScorerBuilder], ScorerBuilder]:
    """Register ``build(config) -> Scorer`` as the scorer ``name`` with its typed config."""

    def decorator(build: ScorerBuilder) -> ScorerBuilder:
        SCORERS.add(name, ScorerDef(name=name, config_cls=config_cls, build=build))
        return build

    return decorator
