"""Losses of the multi-head classification reward model (seed 002, MOSLIM, section 2.2).

Each preference dimension ``i`` has a head with logits ``z_i`` over its ``K_i`` intensity classes.

- eq. 7: ``S_i = softmax(z_i)``; eq. 8: ``L_i`` is the one-hot label of head ``i``;
- eqs. 6 and 9: ``L_{R,head_i} = CrossEntropy(S_i, L_i) = -sum_j L_{i,j} log S_{i,j}``;
- eq. 10: the heads' losses combined "for computational convenience" as one cross-entropy over
  the concatenation ``S_1 || ... || S_n`` against the multi-hot ``L_1 || ... || L_n``.

:func:`multihead_cross_entropy` (the default) sums eq. 9 over the heads that have a label. We
prefer it to eq. 10 because eq. 10 is not what it claims to be: its second line pools
``exp(z_{i,j})`` over heads for each class index ``j``, which needs every head to have the same
``K`` and cannot tell "helpfulness 3" from "honesty 3"; and the first line's single softmax over
the concatenated logits makes the heads compete for one unit of probability mass, so a head's
own probabilities no longer form a distribution over its intensities (which the reward mapping
and the expected intensity need), and its gradient depends on the other heads' logits. The
per-head form keeps the heads independent and is what "the accuracy of intensity classification
for each head" measures. :func:`joint_softmax_cross_entropy` implements the first line of
eq. 10 (one softmax over all heads' logits, multi-hot target) for comparison.

Missing labels (a sample rated on some dimensions only, e.g. UltraFeedback rows have no harmless
rating) are masked, never guessed. Labels are 0-based class indices (intensity ``k`` is index
``k - 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

Logits = Mapping[str, torch.Tensor] | Sequence[torch.Tensor]


def _heads(logits: Logits) -> list[torch.Tensor]:
    return list(logits.values()) if isinstance(logits, Mapping) else list(logits)


def _mask(labels: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Labels present: ``mask`` if given, else ``labels >= 0`` (missing labels written as -100)."""
    valid = labels >= 0
    return valid if mask is None else mask.bool() & valid


def multihead_cross_entropy(logits: Logits, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-head cross-entropy (eqs. 6-9) summed over labelled heads, averaged over the batch.

    Args:
        logits: ``H`` tensors ``[B, K_h]`` (a dict in head order, or a list).
        labels: ``[B, H]`` long, 0-based class index per head; any negative value means missing.
        mask: optional ``[B, H]`` bool, True where the label is present.

    Returns:
        Scalar ``(1/B) * sum_b sum_h m_bh * CE(z_bh, y_bh)``; a sample with no label adds 0.
    """
    heads = _heads(logits)
    present = _mask(labels, mask)
    total = heads[0].new_zeros(())
    for h, z in enumerate(heads):
        target = labels[:, h].clamp(min=0)
        ce = F.cross_entropy(z.float(), target, reduction="none")  # eq. 9, one value per sample
        total = total + (ce * present[:, h]).sum()
    return total / labels.shape[0]


def joint_softmax_cross_entropy(logits: Logits, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 10 (first line): one softmax over the concatenated heads' logits, multi-hot target.

    Args/returns as :func:`multihead_cross_entropy`: the loss is
    ``(1/B) * sum_b sum_h m_bh * -log softmax(z_b1 || ... || z_bH)[offset_h + y_bh]``.
    """
    heads = _heads(logits)
    present = _mask(labels, mask)
    log_probs = torch.log_softmax(torch.cat([z.float() for z in heads], dim=-1), dim=-1)  # [B, sum K_h]
    offsets = torch.tensor([0] + [z.shape[-1] for z in heads[:-1]], device=labels.device).cumsum(0)  # [H]
    index = labels.clamp(min=0) + offsets  # [B, H] positions in the concatenation
    picked = log_probs.gather(1, index)  # [B, H]
    return -(picked * present).sum() / labels.shape[0]
