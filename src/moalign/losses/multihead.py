"""Losses of the multi-head classification reward model (seed 002, MOSLIM, section 2.2).

Each preference dimension ``i`` has a head with logits ``z_i`` over its ``K_i`` intensity classes.
:func:`multihead_cross_entropy` (the default) sums the per-head cross-entropy of eqs. 6-9 over the heads that
have a label; :func:`joint_softmax_cross_entropy` is the first line of eq. 10, for comparison. Reading taken:
eq. 10 is not the per-head loss it claims to be (it makes the heads share one distribution), so the default
keeps the heads independent. Missing labels are masked, never guessed; labels are 0-based class indices.

Reading notes: docs/papers.md#lossesmultiheadpy.
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
