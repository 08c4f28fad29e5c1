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


def chosen_nll(policy_chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """The NLL term that RPO adds to DPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization",
    eq. 1: ``L = L_DPO + alpha * L_NLL`` on the chosen response), a scalar.

    Reading taken: TRL's ``loss_type: sft`` (what ``loss_type: [sigmoid, sft]`` with ``loss_weights: [1,
    alpha]`` computes), the mean negative log-probability over all chosen tokens of the batch,

        L_NLL = - sum_i log pi(y_w^i|x^i) / sum_i |y_w^i|

    where the paper divides each sequence by its own length before averaging (the two agree when the
    chosen responses have equal lengths). ``policy_chosen_logps``: ``[B]`` summed log-probabilities;
    ``chosen_lengths``: ``[B]`` their token counts.
    """
    return -policy_chosen_logps.sum() / chosen_lengths.sum().clamp(min=1)


def best_worst_pairs(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Online DPO's pair per prompt (seed 002 section 3.3; Guo et al. 2024): the best and the worst sample.

    rewards: ``[B, k]`` aggregated rewards of k samples per prompt (NaN: no objective applied, never
    picked). Returns ``(chosen [B], rejected [B], valid [B])``: column indices of the highest and the
    lowest reward (first occurrence on ties) and whether the pair carries a preference (two scored
    samples with different rewards). With k = 2 this is the two-sample comparison of TRL's online DPO.
    """
    valid = ~torch.isnan(rewards)
    high = torch.where(valid, rewards, torch.full_like(rewards, float("-inf")))
    low = torch.where(valid, rewards, torch.full_like(rewards, float("inf")))
    chosen, rejected = high.argmax(dim=-1), low.argmin(dim=-1)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    usable = (valid.sum(dim=-1) >= 2) & (high[rows, chosen] > low[rows, rejected])
    return chosen, rejected, usable
