"""The stage protocol: a registered name, a typed config and a ``run`` function.

A stage reads the previous stage's checkpoint (or the recipe's model) and writes its own
outputs under its directory in the run; it never knows about reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from moalign.budget import Budget
from moalign.config.base import StrictModel
from moalign.data.specs import STAGE_PREFIX
from moalign.errors import UserError
from moalign.registry import Registry
from moalign.rewards.objectives import MultiObjectiveReward, RewardSettings

if TYPE_CHECKING:
    from moalign.run_dir import RunDir
    from moalign.tags import TagDimensions
    from moalign.training.context import RewardFactory


class StageRecipe(RewardSettings, Protocol):
    """What a stage reads of its run's recipe: the reward's settings and the run's model
    (:class:`moalign.recipe.Recipe` is one)."""

    @property
    def model(self) -> str: ...


@dataclass
class StageContext:
    """What a stage receives: the recipe, its run directory and the model it starts from."""

    recipe: StageRecipe
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

    @property
    def tag_dimensions(self) -> TagDimensions:
        """The recipe's preference-tag dimensions."""
        return self.recipe.tag_dimensions

    def stage_output(self, spec: str) -> Path:
        """Resolve ``stage:TYPE/FILE`` to the file written by the latest earlier stage of that type."""
        stage_type, _, name = spec.removeprefix(STAGE_PREFIX).partition("/")
        for index in range(self.index - 1, 0, -1):
            candidate = self.run.root / f"{index:02d}-{stage_type}"
            if candidate.is_dir():
                path = candidate / name
                if not path.exists():
                    raise UserError(f"dataset '{spec}': stage {candidate.name} wrote no file '{name}'")
                return path
        raise UserError(f"dataset '{spec}': no earlier '{stage_type}' stage in this recipe")

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.run.log_metrics(metrics, stage=f"{self.index:02d}-{self.stage_type}", step=step)


@dataclass
class StageResult:
    """What a stage hands on: the checkpoint the next stage starts from (or None) and a summary."""

    model: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


StageRun = Callable[[StageContext, Any], StageResult]
BudgetEstimate = Callable[[Any], Budget]
"""``estimate(config) -> Budget``: a stage's token budget from its config alone."""
DataCheck = Callable[[Any, "TagDimensions"], None]
"""``check(config, tag_dimensions)``: the checks a stage runs on its whole dataset before loading a model,
without a run (the dry run's, on local files); a :class:`UserError` names the problem."""


@dataclass(frozen=True)
class StageDef:
    """A registered stage: its name, typed config and run function, and what it declares about itself."""

    name: str
    config_cls: type[StrictModel]
    run: StageRun
    consumes: tuple[str, ...] | None = None
    """The adapter record kinds its ``dataset`` may give (None: any, or no dataset)."""
    scores_samples: bool = False
    """It scores samples with the recipe's objectives (so it resolves their ``stage:`` references)."""
    budget: BudgetEstimate | None = None
    """Its token budget (None: no estimate)."""
    data_check: DataCheck | None = None
    """What it checks of its data before loading a model (None: nothing beyond reading it)."""


STAGES: Registry[StageDef] = Registry("stage")


def register_stage(
    name: str,
    config_cls: type[StrictModel],
    *,
    consumes: tuple[str, ...] | None = None,
    scores_samples: bool = False,
    budget: BudgetEstimate | None = None,
    data_check: DataCheck | None = None,
) -> Callable[[StageRun], StageRun]:
    """Register ``run(ctx, config) -> StageResult`` as the stage ``name`` with its typed config and what it
    declares about itself: the record kinds it reads, whether it scores samples, its token budget and its
    data check (the :class:`StageDef` fields of those names)."""

    def decorator(run: StageRun) -> StageRun:
        declared = {"consumes": consumes, "scores_samples": scores_samples, "budget": budget, "data_check": data_check}
        STAGES.add(name, StageDef(name, config_cls, run, **declared))
        return run

    return decorator


def training_reward(ctx: StageContext) -> RewardFactory:
    """The recipe's reward for a training stage's loop, built when the loop asks for it (with the loop's
    metrics log); a :class:`UserError` at once if the recipe declares no objectives."""
    if not ctx.recipe.objectives:
        raise UserError(f"stage {ctx.index:02d}-{ctx.stage_type} needs the recipe's 'objectives' to score samples")
    return lambda log: MultiObjectiveReward.for_stage(ctx, log=log)
