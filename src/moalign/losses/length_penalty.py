"""The dynamic length penalty of seed 004 (eq. 3).

    L = L_SFT + lambda * E_{y ~ pi(.|x)} [ max(0, |y| - |y_ref|)^2 ]

|y| is the length of a completion sampled from the current policy and |y_ref| the length of the
reference completion of the same prompt. A sampled length has no gradient, so the expectation's
gradient is taken with the score-function (REINFORCE) estimator

    grad E[P(y)] = E[(P(y) - b) * grad log pi(y|x)]

with a baseline b that does not depend on y. Reading taken: the paper gives no estimator; we sample
k completions per prompt and use the leave-one-out mean of the other k-1 penalties as b (unbiased,
and the same baseline seed 004 uses for GRPO); with k = 1 the batch mean is used.
"""

from __future__ import annotations

import torch

from moalign.losses.advantages import leave_one_out_advantages


def length_penalty(sample_lengths: torch.Tensor, reference_lengths: torch.Tensor, coef: float) -> torch.Tensor:
    """``coef * max(0, |y| - |y_ref|)^2`` per sample (seed 004 eq. 3).

    sample_lengths: ``[B, k]`` token counts of k samples per prompt; reference_lengths: ``[B]``.
    Returns ``[B, k]`` float penalties.
    """
    excess = (sample_lengths.float() - reference_lengths.float().unsqueeze(-1)).clamp(min=0.0)
    return coef * excess**2


def length_penalty_surrogate(penalties: torch.Tensor, sequence_logps: torch.Tensor) -> torch.Tensor:
    """A scalar to add to the loss: its value is the mean penalty (eq. 3's term, so the logged loss is
    eq. 3's L) and its gradient the REINFORCE estimate of ``grad E[penalty]``.

    penalties: ``[B, k]`` (no gradient); sequence_logps: ``[B, k]`` summed log-probabilities of the
    sampled completions (with gradient). Baseline: leave-one-out within a prompt when k > 1, else
    the batch mean. The score term is ``centred * (logp - logp.detach())``, zero in value.
    """
    penalties = penalties.detach()
    if penalties.shape[1] > 1:
        centred = leave_one_out_advantages(penalties)
    else:
        centred = penalties - penalties.mean()
    score = sequence_logps - sequence_logps.detach()
    return penalties.mean() + (centred * score).mean()
