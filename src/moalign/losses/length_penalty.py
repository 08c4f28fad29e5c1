"""The dynamic length penalty of seed 004 (eq. 3).

    L = L_SFT + lambda * E_{y ~ pi(.|x)} [ max(0, |y| - |y_ref|)^2 ]

|y| is the length of a completion sampled from the current policy, |y_ref| the reference completion's; the
gradient is the REINFORCE estimate ``E[(P(y) - b) * grad log pi(y|x)]``. Reading taken (the paper gives no
estimator): b is the leave-one-out mean of the other k-1 samples' penalties, the batch mean when k = 1.

Reading notes: docs/papers.md#losseslength_penaltypy.
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
