"""Advantage estimators: pure functions on reward tensors."""

from __future__ import annotations

import torch


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``A_i = R_i - mean_{j != i} R_j`` within each group (seed 004 eq. 6; RLOO, Ahmadian et al. 2024).

    rewards: ``[B, k]`` with k >= 2 samples per prompt. Returns ``[B, k]``.
    Equivalent to ``k / (k - 1) * (R_i - mean_j R_j)``.
    """
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("leave-one-out needs at least 2 samples per group")
    others_mean = (rewards.sum(dim=-1, keepdim=True) - rewards) / (k - 1)
    return rewards - others_mean
