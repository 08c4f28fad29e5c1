"""The stage protocol: a registered name, a typed config and a ``run`` function.

A stage reads the previous stage's checkpoint (or the recipe's model) and writes its own
outputs under its directory in the run; it never knows about reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moalign.config.base import StrictModel
from moalign.registry import Registry

if TYPE_CHECKING:
    from moalign.config.recipe import Recipe
    from moalign.run_dir import RunDir


@dataclass
class StageContext:
    """What a stage receives: the recipe, its run directory and the model it starts from."""

    recipe: Recipe
    run: RunDir
    index: int
    stage_type: str
    model: str
    """Model spec or checkpoint directory this stage starts from."""
    seed: int

    @property
    def dir(self) -> Path:
        return self.run.stage_dir(self.index, self.stage_type)

    @property
    def checkpoint_dir(self) -> Path:
        """Where the stage's trainer keeps its resumable ``checkpoint-<step>`` directories."""
        return self.dir / "checkpoints"

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log_metrics(metrics, stage=f"{self.index:02d}-{self.stage_type}", step=step)


@dataclass
class StageResult:
    """What a stage hands on: the checkpoint the next stage starts from (or None) and a summary."""

    model: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


StageRun = Callable[[StageContext, Any], StageResult]


@dataclass(frozen=True)
class StageDef:
    name: str
    config_cls: type[StrictModel]
    run: StageRun


STAGES: Registry[StageDef] = Registry("stage")


def register_stage(name: str, config_cls: type[StrictModel]) -> Callable[[StageRun], StageRun]:
    """Register ``run(ctx, config) -> StageResult`` as the stage ``name`` with its typed config."""

    def decorator(run: StageRun) -> StageRun:
        STAGES.add(name, StageDef(name=name, config_cls=config_cls, run=run))
        return run

    return decorator
