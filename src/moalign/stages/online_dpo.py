"""Online DPO (Guo et al. 2024; seed 002 section 3.3, best in its table 4) on the project's on-policy loop.

Each step samples k completions per prompt, ranks them with the recipe's aggregated reward, and applies
:func:`moalign.losses.preference.dpo_loss` to the best and the worst of each group
(:func:`moalign.losses.preference.best_worst_pairs`) against the frozen starting checkpoint; groups whose
samples all score the same are skipped. Not TRL's experimental ``OnlineDPOTrainer``: it takes exactly two
samples per prompt and counts a reward of None as 0.

Reading notes: docs/papers.md#stagesonline_dpopy.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from moalign.losses.preference import best_worst_pairs, dpo_loss
from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.online import (
    OnlineStageConfig,
    ScoredRollout,
    check_online_data,
    online_budget,
    sample_token_logps,
    train_online,
)


class OnlineDPOStageConfig(OnlineStageConfig):
    """Defaults: two samples per prompt (TRL's online DPO), beta 0.1 (seed 004 section 4)."""

    num_generations: int = Field(2, ge=2)
    beta: float = Field(0.1, gt=0.0)
    learning_rate: float = Field(5e-7, gt=0.0)


def online_dpo_step_loss(config: OnlineDPOStageConfig):
    def step_loss(model: Any, samples: ScoredRollout, rewards: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        k = samples.group_size
        chosen, rejected, valid = best_worst_pairs(rewards.float().view(-1, k))
        if not bool(valid.any()):
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return zero, {"dpo/pairs": 0.0}
        base = torch.arange(valid.shape[0], device=valid.device)[valid] * k
        rows = torch.cat([base + chosen[valid], base + rejected[valid]]).tolist()
        pair = samples.rows(rows)
        assert pair.ref_logps is not None
        logps = sample_token_logps(model, pair).sum(-1)
        ref = pair.ref_logps.sum(-1)
        pol_c, pol_r = logps.chunk(2)
        ref_c, ref_r = ref.chunk(2)
        losses, chosen_rewards, rejected_rewards = dpo_loss(pol_c, pol_r, ref_c, ref_r, config.beta)
        margin = chosen_rewards - rejected_rewards
        return losses.mean(), {
            "dpo/pairs": float(valid.sum().item()),
            "rewards/margins": margin.mean().item(),
            "rewards/accuracies": (margin > 0).float().mean().item(),
        }

    return step_loss


@register_stage(
    "online_dpo",
    OnlineDPOStageConfig,
    consumes=("prompts",),
    scores_samples=True,
    budget=online_budget,
    data_check=check_online_data,
)
def run_online_dpo(ctx: StageContext, config: OnlineDPOStageConfig) -> StageResult:
    """Train with online DPO against the starting checkpoint; hand on the final checkpoint."""
    path = train_online(ctx, config, online_dpo_step_loss(config), reference=True, make_reward=training_reward(ctx))
    return StageResult(model=path, summary={"steps": config.max_steps})
