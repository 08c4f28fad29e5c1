"""Policy-gradient losses on sequence log-probabilities (pure functions)."""

from __future__ import annotations

import torch

from moalign.losses.advantages import Baseline, centred_rewards


def reward_weighted_nll(
    sequence_logps: torch.Tensor, rewards: torch.Tensor, baseline: Baseline = "leave_one_out"
) -> torch.Tensor:
    """Reward-weighted likelihood (seed 000 section 3.3): ``L = -log p(y|x) * r``, averaged.

    sequence_logps: ``[B, k]`` log-probabilities of k sampled completions per prompt (summed over
    tokens, or averaged for length normalisation; with gradient). rewards: ``[B, k]``, no gradient.
    Reading taken: as written, an all-negative reward (gap-to-ideal is never positive) pushes every
    sample's likelihood down; subtracting a baseline (default: leave-one-out within the prompt's
    group) turns it into the REINFORCE estimator, which raises better-than-average samples and
    lowers worse ones. ``baseline="none"`` is the paper's literal form. Samples whose reward is NaN
    (no objective applied) carry no weight.
    """
    weights = centred_rewards(rewards.detach().to(sequence_logps.dtype), baseline)
    mask = ~torch.isnan(weights)
    if not bool(mask.any()):
        return sequence_logps.sum() * 0.0
    return -(torch.where(mask, weights, torch.zeros_like(weights)) * sequence_logps).sum() / mask.sum()
