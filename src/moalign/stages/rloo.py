"""RLOO on TRL's RLOOTrainer (Ahmadian et al. 2024; seed 002 section 3.3, table 4), fed by the project's reward.

TRL's RLOO folds the KL to the reference into the sequence reward (``R - beta * sum_t log pi/pi_ref``)
and takes the leave-one-out baseline ``R_i - mean_{j != i} R_j`` within each prompt's group; the
reward plumbing (aggregators, per-objective logging, tags) is the GRPO stage's. With ``shared_prompt``
(the default) the per-token log-probabilities come from packed groups, each prompt computed once
and a prompt's samples share its prefill (:class:`moalign.training.trl_fence.SharedPromptMixin`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.trl_online import (
    TRLOnlineStageConfig,
    check_trl_online_data,
    online_trainer_kwargs,
    run_trl_online,
    trl_online_budget,
)


class RLOOStageConfig(TRLOnlineStageConfig):
    """Defaults follow seed 002 appendix D where it gives one (lr 1e-5), TRL's otherwise."""

    learning_rate: float = Field(1e-5, gt=0.0)
    per_device_train_batch_size: int = Field(8, gt=0)
    beta: float = Field(0.05, ge=0.0)
    normalize_advantages: bool = False
    """Whiten the advantages over the batch (TRL's key)."""


def rloo_trainer_class(config: RLOOStageConfig) -> Any:
    """TRL's ``RLOOTrainer``, with packed groups for ``shared_prompt``."""
    from trl import RLOOTrainer

    from moalign.training.trl_fence import SharedPromptRLOOTrainer

    return SharedPromptRLOOTrainer if config.shared_prompt else RLOOTrainer


@register_stage(
    "rloo",
    RLOOStageConfig,
    consumes=("prompts",),
    scores_samples=True,
    budget=trl_online_budget,
    data_check=check_trl_online_data,
)
def run_rloo(ctx: StageContext, config: RLOOStageConfig) -> StageResult:
    """Train with RLOO on the recipe's prompts and reward; hand on the final checkpoint."""
    from trl import RLOOConfig

    from moalign.training.checkpoint import save_trainer_model

    args = RLOOConfig(
        **online_trainer_kwargs(config, ctx.checkpoint_dir, ctx.seed),
        normalize_advantages=config.normalize_advantages,
    )
    trainer, output = run_trl_online(ctx, config, rloo_trainer_class(config), args, make_reward=training_reward(ctx))
    path = save_trainer_model(trainer, trainer.processing_class, ctx.dir / "model")
    return StageResult(model=str(path), summary={"train_loss": output.training_loss, "steps": output.global_step})
