"""Advantage estimators: pure functions on reward tensors."""

from __future__ import annotations

import torch


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
    return torch.where(valid & (others > 0), rewards - others_mean, torch.full_like(rewards, float("nan")))


def group_advantages(rewards: torch.Tensor, scale: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024, section 4.1.2): ``A_i = (R_i - mean_j R_j) / std_j R_j``.

    rewards: ``[B, k]`` (k samples per prompt). ``scale=False`` drops the division by the group's std
    (Dr. GRPO; TRL's ``scale_rewards="none"``). The std is the sample std (TRL's ``nanstd``) plus ``eps``.
    Returns ``[B, k]``. For k >= 2, ``leave_one_out_advantages = k / (k - 1) * group_advantages(scale=False)``.
    """
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    if not scale:
        return centred
    std = rewards.std(dim=-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(centred[..., :1])
    return centred / (std + eps)
