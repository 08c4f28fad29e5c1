"""What the training loops read of the stage that runs them, and what they need of its reward.

The stage API (:class:`moalign.stages.base.StageContext`) and the reward layer
(:class:`moalign.rewards.MultiObjectiveReward`) sit above training; these protocols name the part of
each that training uses, so training imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from moalign.data.specs import DataContext
from moalign.run_dir import RunDir

MetricsLogger = Callable[[dict[str, float]], Any]
"""Receives one ``{"reward/<objective>/mean": ..., ...}`` mapping per scored batch (e.g. ``StageContext.log``)."""


class TrainingStage(DataContext, Protocol):
    """A stage of a run as the training loops see it: its place, its starting model, its directories and
    its metrics log (:class:`moalign.stages.base.StageContext` is one)."""

    @property
    def index(self) -> int: ...

    @property
    def stage_type(self) -> str: ...

    @property
    def model(self) -> str:
        """Model spec or checkpoint directory the stage starts from."""
        ...

    @property
    def run(self) -> RunDir: ...

    @property
    def dir(self) -> Path: ...

    @property
    def checkpoint_dir(self) -> Path: ...

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...


class Reward(Protocol):
    """A multi-objective reward as the training loops use it (:class:`moalign.rewards.MultiObjectiveReward`
    is one): scores a batch, carries its normaliser state across a resume and writes its statistics."""

    log: MetricsLogger | None

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], *, frozen: bool = False, **columns: Sequence[Any]
    ) -> list[float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def save_trained_statistics(self, stage_dir: Path) -> None: ...


RewardFactory = Callable[[MetricsLogger | None], Reward]
"""Builds the stage's reward when the loop reaches it, with the loop's metrics log."""
