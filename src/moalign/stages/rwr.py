"""Reward-weighted likelihood (seed 000 section 3.3) on the project's on-policy loop.

Samples completions from the current policy, scores them with the recipe's objectives and
aggregator, and minimises ``-log p(y|x) * (r - baseline)`` (:func:`moalign.losses.policy.reward_weighted_nll`).
"""

from __future__ import annotations

from typing import Any

import torch

from moalign.losses.policy import Baseline, reward_weighted_nll
from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.logprobs import prompt_completion_logps
from moalign.training.online import OnlineStageConfig, check_online_data, online_budget, train_online
from moalign.training.rollout import Rollout


class RWRStageConfig(OnlineStageConfig):
    baseline: Baseline = "leave_one_out"
    """``leave_one_out`` (default), ``mean``, or ``none`` (the paper's literal -log p * r)."""
    length_normalize: bool = False
    """Use the mean per-token log-probability instead of the sum (less weight on long samples)."""


def rwr_step_loss(config: RWRStageConfig):
    def step_loss(model: Any, rollout: Rollout, rewards: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logps = prompt_completion_logps(model, rollout.prompt_ids, rollout.completion_ids, pad_id=0)
        device = logps.device
        if config.length_normalize:
            lengths = torch.tensor([len(c) for c in rollout.completion_ids], device=device)
            logps = logps / lengths.clamp(min=1)
        k = rollout.group_size
        loss = reward_weighted_nll(logps.view(-1, k), rewards.to(device).view(-1, k), config.baseline)
        return loss, {"rwr/sequence_logp": logps.mean().item()}

    return step_loss


@register_stage(
    "rwr",
    RWRStageConfig,
    consumes=("prompts",),
    scores_samples=True,
    budget=online_budget,
    data_check=check_online_data,
)
def run_rwr(ctx: StageContext, config: RWRStageConfig) -> StageResult:
    """Train with reward-weighted likelihood; hand on the final checkpoint."""
    path = train_online(ctx, config, rwr_step_loss(config), make_reward=training_reward(ctx))
    return StageResult(model=path, summary={"steps": config.max_steps})
