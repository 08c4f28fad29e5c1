"""PPO (Schulman et al. 2017) as pure functions: KL estimators, per-token rewards, clipped losses (GAE: advantages).

Every function works on ``[N, T]`` per-token tensors with a ``mask`` (1 on the completion tokens that count).
Seed 002 trains its policy with PPO on eq. 12, ``E[r_theta(x, y) - beta * log(pi_phi(y|x) / pi_SFT(y|x))]``,
clip range 0.2, entropy coefficient 0.01 (appendix D). Reading taken: eq. 12's KL term is folded into the
per-token reward (Ziegler et al. 2019); summed over tokens it is eq. 12's sequence-level log-ratio.

Reading notes: docs/papers.md#lossesppopy.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (any shape); 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the masked positions (population std); masked-out positions become 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask.to(values.dtype)


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, kind: KLEstimator = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: ``[N, T]`` log-probs -> ``[N, T]``.

    ``k1``: ``log pi - log pi_ref`` (unbiased, can be negative; summed over a sequence it is eq. 12's
    log-ratio). ``k3``: ``exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1`` (unbiased, never
    negative; Schulman 2020, "Approximating KL divergence", the estimator TRL's GRPO uses).
    """
    delta = logps - ref_logps
    if kind == "k1":
        return delta
    if kind == "k3":
        return torch.expm1(-delta) + delta
    raise ValueError(f"unknown KL estimator '{kind}'")


def kl_penalised_rewards(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token rewards of seed 002 eq. 12: ``-beta * (log pi - log pi_ref)`` on every completion token,
    plus the sequence score ``scores[n]`` on the row's last completion token.

    scores ``[N]``; logps, ref_logps, mask ``[N, T]``. Returns ``[N, T]`` (0 off the mask). A row with
    an empty mask gets no score.
    """
    mask_f = mask.to(logps.dtype)
    rewards = -beta * kl_estimate(logps, ref_logps, "k1") * mask_f
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
    has_tokens = last >= 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    rewards[rows, last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards


def clipped_surrogate_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise:

        L = -mean_t min( rho_t * A_t, clip(rho_t, 1 - eps, 1 + eps) * A_t ),   rho_t = pi(a_t) / pi_old(a_t)

    All inputs ``[N, T]``; the mean runs over the masked tokens. Returns ``(loss, clipped_fraction)``,
    the share of masked tokens where the clipped term was the smaller one.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    fraction = masked_mean((clipped < unclipped).to(logps.dtype), mask)
    return loss, fraction.detach()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> torch.Tensor:
    """PPO's clipped value loss (the PPO2 baselines form used by TRL's PPO and OpenRLHF):

        L_V = 0.5 * mean_t max( (V_t - R_t)^2, (clip(V_t, V_old_t - eps, V_old_t + eps) - R_t)^2 )

    All inputs ``[N, T]``; the mean runs over the masked tokens.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def token_entropy(logits: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Entropy (nats) of each position's next-token distribution: logits ``[..., V]`` -> ``[...]``.

    ``H = logsumexp(z) - sum softmax(z) z``, in float32, ``chunk`` positions at a time (a float32 copy of
    1024 x 49,152 logits is 192 MiB).
    """
    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for start in range(0, flat.shape[0], chunk):
        rows = flat[start : start + chunk].float()
        parts.append(torch.logsumexp(rows, dim=-1) - (torch.softmax(rows, dim=-1) * rows).sum(-1))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(logits.shape[:-1])
