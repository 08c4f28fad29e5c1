"""GRPO on TRL's GRPOTrainer, fed by the project's multi-objective reward (seed 004 section 3.4, eq. 6).

``advantage: leave_one_out`` (the default) replaces TRL's advantages with eq. 6's exact leave-one-out ones
(:func:`moalign.losses.advantages.leave_one_out_advantages`); ``advantage: group`` keeps TRL's own.
Readings taken for eq. 6: TRL's ``loss_type: dr_grpo`` (no per-length averaging) and its per-token k3 KL
with ``beta`` = lambda. Defaults follow seed 004 section 4.4 (lr 5e-6, KL 0.1, 4 responses, 10 warmup steps).
``shared_prompt`` (the default) scores a group's k completions from one packed ``prompt + completions``
segment (:func:`moalign.training.logprobs.pack_completions`), equal to TRL's forward within float32 rounding.

Reading notes: docs/papers.md#stagesgrpopy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.trl_online import (
    TRLOnlineStageConfig,
    check_trl_online_data,
    online_trainer_kwargs,
    run_trl_online,
    trl_online_budget,
)

Advantage = Literal["group", "leave_one_out"]


class GRPOStageConfig(TRLOnlineStageConfig):
    learning_rate: float = Field(5e-6, gt=0.0)
    warmup_steps: int = 10
    per_device_train_batch_size: int = Field(8, gt=0)
    beta: float = Field(0.1, ge=0.0)
    advantage: Advantage = "leave_one_out"
    """``leave_one_out``: R_i - mean_{j != i} R_j (seed 004 eq. 6); ``group``: TRL's R_i - mean_j R_j,
    divided by the std per ``scale_rewards``."""
    scale_rewards: Literal["group", "batch", "none"] = "none"
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dr_grpo"

    @model_validator(mode="after")
    def _check_advantage(self) -> GRPOStageConfig:
        if self.advantage == "leave_one_out" and self.scale_rewards != "none":
            raise ValueError("advantage 'leave_one_out' (seed 004 eq. 6) takes no std scaling: set scale_rewards: none")
        return self


def grpo_args(config: GRPOStageConfig, output_dir: Any, seed: int) -> Any:
    """The stage's ``GRPOConfig`` (the stage and ``moalign bench`` both build it here)."""
    from trl import GRPOConfig

    return GRPOConfig(
        **online_trainer_kwargs(config, output_dir, seed),
        scale_rewards=config.scale_rewards,
        loss_type=config.loss_type,
    )


def grpo_trainer_class(config: GRPOStageConfig) -> Any:
    """TRL's ``GRPOTrainer`` (with packed groups for ``shared_prompt``), with leave-one-out advantages for
    ``advantage: leave_one_out``."""
    from trl import GRPOTrainer

    from moalign.training import trl_fence as fence

    if config.advantage == "leave_one_out":
        return fence.SharedPromptLeaveOneOutGRPOTrainer if config.shared_prompt else fence.LeaveOneOutGRPOTrainer
    return fence.SharedPromptGRPOTrainer if config.shared_prompt else GRPOTrainer


@register_stage(
    "grpo",
    GRPOStageConfig,
    consumes=("prompts",),
    scores_samples=True,
    budget=trl_online_budget,
    data_check=check_trl_online_data,
)
def run_grpo(ctx: StageContext, config: GRPOStageConfig) -> StageResult:
    """Train with GRPO on the recipe's prompts and reward; hand on the final checkpoint."""
    from moalign.training.checkpoint import save_trainer_model

    args = grpo_args(config, ctx.checkpoint_dir, ctx.seed)
    trainer, output = run_trl_online(ctx, config, grpo_trainer_class(config), args, make_reward=training_reward(ctx))
    path = save_trainer_model(trainer, trainer.processing_class, ctx.dir / "model")
    return StageResult(model=str(path), summary={"train_loss": output.training_loss, "steps": output.global_step})
