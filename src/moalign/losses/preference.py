"""Preference losses on sequence log-probabilities (pure functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (seed 004 eq. 5; Rafailov et al. 2023):

        L = -log sigma( beta * log pi(y_w|x)/pi_ref(y_w|x) - beta * log pi(y_l|x)/pi_ref(y_l|x) )

    All inputs are ``[B]`` summed log-probabilities of the completions. Returns the per-pair losses
    ``[B]`` and the implicit rewards ``beta * log pi/pi_ref`` of the chosen and rejected completions.
    """
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()
