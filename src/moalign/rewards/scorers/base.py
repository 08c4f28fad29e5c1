"""The scorer plug-in interface: a registered name, a typed config and a builder.

A scorer is a plain callable ``scorer(prompts, completions, **columns) -> list[float]`` (one score
per sample, NaN where the objective does not apply). Prompts reach it with preference tags
already stripped; the parsed tags arrive as the ``tags`` column (one ``{dimension: intensity}``
per sample). It runs without gradients and batches internally.

A builder may take a keyword argument ``models`` (a :class:`ModelCache`): objectives whose scorers
load the same model then share one copy, and, through :class:`BatchMemo`, one forward pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from moalign.config.base import StrictModel
from moalign.registry import Registry

T = TypeVar("T")


class Scorer(Protocol):
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Sequence[Any]) -> list[float]:
        """One score per (prompt, completion); NaN where the objective does not apply."""
        ...


ScorerBuilder = Callable[..., Scorer]


@dataclass(frozen=True)
class ScorerDef:
    name: str
    config_cls: type[StrictModel]
    build: ScorerBuilder
    partial: bool = False
    """True: NaN (or None) from this scorer means "does not apply". False: it scores every sample
    it is given, so a NaN from it is a bug and is reported with the objective and the sample."""

    def create(self, config: StrictModel, models: ModelCache | None = None) -> Scorer:
        """Build the scorer, handing it ``models`` when its builder accepts that keyword."""
        if "models" in inspect.signature(self.build).parameters:
            return self.build(config, models=models if models is not None else ModelCache())
        return self.build(config)


SCORERS: Registry[ScorerDef] = Registry("scorer")


def register_scorer(
    name: str, config_cls: type[StrictModel], *, partial: bool = False
) -> Callable[[ScorerBuilder], ScorerBuilder]:
    """Register ``build(config) -> Scorer`` as the scorer ``name`` with its typed config.

    ``partial=True`` declares that the scorer returns NaN for samples it does not apply to (for
    example a verifier on a prompt without constraints); otherwise NaN from it is an error.
    """

    def decorator(build: ScorerBuilder) -> ScorerBuilder:
        SCORERS.add(name, ScorerDef(name=name, config_cls=config_cls, build=build, partial=partial))
        return build

    return decorator


class ModelCache:
    """Loaded models (or any expensive object) shared between the scorers of one reward.

    ``cache.get(("seq-cls", path), load)`` calls ``load()`` the first time only.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        if key not in self._items:
            self._items[key] = load()
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[Any]:
        """The loaded objects, in loading order."""
        return list(self._items.values())


class BatchMemo:
    """Remembers the result of the last call per batch, so objectives sharing a model share a forward.

    ``memo(prompts, completions, compute)`` returns the cached result when the same batch (equal
    prompts and completions) was computed last, else ``compute()``.
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._value: Any = None
        self.computed = 0
        """How many times ``compute`` ran (for tests and benchmarks)."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], compute: Callable[[], T]) -> T:
        key = (tuple(prompts), tuple(completions))
        if key != self._key:
            self._value = compute()
            self._key = key
            self.computed += 1
        return self._value


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts`` in batches of similar length (less padding); every index once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
