"""Advantage estimators, one module: the group baselines on ``[B, k]`` sequence rewards (k samples per prompt),
looked up by name in :data:`ADVANTAGES` (GRPO, RLOO, RWR and the length penalty use them), and GAE on
per-token rewards (PPO). Each is NaN-aware: a NaN reward (nothing scored the sample) is left out of every
mean and keeps a NaN advantage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from moalign.registry import Registry

Baseline = Literal["none", "mean", "leave_one_out", "group"]
"""The names of :data:`ADVANTAGES`."""

ADVANTAGES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("advantage estimator")
"""Group advantage estimators by name: ``estimator(rewards [B, k]) -> advantages [B, k]``."""


def _nan_where_invalid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, values, torch.full_like(values, float("nan")))


@ADVANTAGES.register("none")
def no_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """The rewards themselves (no baseline: seed 000's reward-weighted likelihood as written)."""
    return rewards


@ADVANTAGES.register("mean")
def batch_mean_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``A_i = R_i - mean R`` over the whole batch's valid rewards (a baseline shared by every prompt)."""
    valid = ~torch.isnan(rewards)
    return rewards - rewards[valid].mean() if bool(valid.any()) else rewards


@ADVANTAGES.register("leave_one_out")
def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``A_i = R_i - mean_{j != i} R_j`` within each group (seed 004 eq. 6; RLOO, Ahmadian et al. 2024).

    rewards: ``[B, k]``, k samples per prompt. Returns ``[B, k]``. NaN rewards (nothing scored the
    sample) are left out of the means and stay NaN; a sample with no valid peer gets NaN. Without NaN,
    equivalent to ``k / (k - 1) * (R_i - mean_j R_j)``.
    """
    valid = ~torch.isnan(rewards)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))
    others = valid.sum(-1, keepdim=True) - valid.long()
    others_mean = (filled.sum(-1, keepdim=True) - filled) / others.clamp(min=1)
    return _nan_where_invalid(rewards - others_mean, valid & (others > 0))


@ADVANTAGES.register("group")
def group_advantages(rewards: torch.Tensor, scale: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024, section 4.1.2): ``A_i = (R_i - mean_j R_j) / std_j R_j``.

    rewards: ``[B, k]`` (k samples per prompt). ``scale=False`` (the registered form) drops the division by
    the group's std (Dr. GRPO; TRL's ``scale_rewards="none"``). The std is the sample std of the group's
    valid rewards (TRL's ``nanstd``) plus ``eps``. Returns ``[B, k]``. For k >= 2 and no NaN,
    ``leave_one_out_advantages = k / (k - 1) * group_advantages(scale=False)``.
    """
    valid = ~torch.isnan(rewards)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))
    count = valid.sum(-1, keepdim=True)
    mean = filled.sum(-1, keepdim=True) / count.clamp(min=1)
    centred = _nan_where_invalid(rewards - mean, valid)
    if not scale:
        return centred
    squares = torch.where(valid, (rewards - mean) ** 2, torch.zeros_like(rewards)).sum(-1, keepdim=True)
    std = torch.sqrt(squares / (count - 1).clamp(min=1))
    return centred / (std + eps)


def centred_rewards(rewards: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """Rewards ``[B, k]`` minus the baseline named ``baseline`` (:data:`ADVANTAGES`); NaN stays NaN."""
    return ADVANTAGES.get(baseline)(rewards)


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) along each row.

        delta_t = r_t + gamma * V_{t+1} - V_t,     A_t = sum_l (gamma * lam)^l * delta_{t+l}

    rewards, values, mask: ``[N, T]``. The completion tokens of a row are one contiguous run of the
    mask; the value after the run's last token is 0 (the episode ends), positions off the mask get
    advantage 0 and do not leak into the run before them. Returns ``(advantages, returns)``, both
    ``[N, T]``, with ``returns = advantages + values`` on the mask (the value targets) and 0 off it.
    """
    mask_f = mask.to(values.dtype)
    values = values * mask_f
    rewards = rewards * mask_f
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    horizon = values.shape[1]
    for t in reversed(range(horizon)):
        next_value = values[:, t + 1] if t + 1 < horizon else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask_f[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask_f
