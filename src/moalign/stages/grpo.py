"""GRPO on TRL's GRPOTrainer, fed by the project's multi-objective reward (seed 004 section 3.4, eq. 6).

Seed 004's variant (eq. 6) is

    L = -E_x [ sum_i ( R(y_i, x) - 1/(k-1) sum_{j != i} R(y_j, x) ) grad log pi(y_i|x) ] + lambda * KL(pi || pi_ref)

``advantage: leave_one_out`` (the default) implements it: TRL's advantages are replaced by the exact
leave-one-out ones (:func:`moalign.losses.advantages.leave_one_out_advantages`, NaN-aware), which differ from
TRL's group-mean advantage with ``scale_rewards: none`` by the factor k/(k-1); scaling the rewards
instead would also scale the logged rewards, and the factor matters because it sets the weight of
the policy term against ``beta``. ``advantage: group`` keeps TRL's own (``scale_rewards`` group,
batch or none). Readings taken for eq. 6: the sum over tokens of ``log pi`` with a constant
normaliser is TRL's ``loss_type: dr_grpo`` (the default here; eq. 6 has no per-length averaging);
KL(pi || pi_ref) is TRL's per-token k3 estimate with ``beta`` = lambda, summed over the same tokens,
so policy and KL terms keep eq. 6's relative weight. Defaults follow seed 004 section 4.4 (lr 5e-6,
KL coefficient 0.1, 4 responses per prompt, 10 warmup steps).

``shared_prompt`` (the default) computes the per-token log-probabilities of a group's k completions
from one ``prompt + completion_1 + ... + completion_k`` segment
(:func:`moalign.training.logprobs.pack_completions`): the prompt once instead of k times, no padding
between groups, and the vocabulary projection only where a completion token is scored. The values
equal TRL's own forward within float32 rounding (checked by a test); the loss is TRL's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.trl_online import TRLOnlineStageConfig, online_trainer_kwargs, run_trl_online

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


@register_stage("grpo", GRPOStageConfig)
def run_grpo(ctx: StageContext, config: GRPOStageConfig) -> StageResult:
    """Train with GRPO on the recipe's prompts and reward; hand on the final checkpoint."""
    from moalign.training.checkpoint import save_trainer_model

    args = grpo_args(config, ctx.checkpoint_dir, ctx.seed)
    trainer, output = run_trl_online(ctx, config, grpo_trainer_class(config), args, make_reward=training_reward(ctx))
    path = save_trainer_model(trainer, trainer.processing_class, ctx.dir / "model")
    return StageResult(model=str(path), summary={"train_loss": output.training_loss, "steps": output.global_step})
