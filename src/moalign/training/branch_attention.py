"""Branch attention: SDPA over packed ``prompt + completion_1 + ... + completion_n`` segments, branch by branch.

In a packed row (:class:`~moalign.training.logprobs.PackedCompletions`) each completion attends to its prompt
and itself only. A 4-D mask makes SDPA compute all ``L^2`` products of a row; branch attention computes only
the allowed blocks (about 7 times fewer for 4 DPO pairs in a row, 4 for a GRPO group of 8), the same result
within float32 rounding. The model uses it when its attention implementation is :data:`BRANCH_ATTENTION`
(:func:`branch_attention_for`) and the forward gets ``branch_layout``; checkpointed models get the 4-D mask.

Notes: docs/papers.md#trainingbranch_attentionpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

BRANCH_ATTENTION = "moalign_branch_sdpa"
"""The name branch attention is registered under in transformers' ``AttentionInterface``."""

Segment = tuple[int, int, tuple[int, ...]]
"""``(start, prompt_length, completion_lengths)`` of one packed segment within its row."""


@lru_cache(maxsize=4096)
def branch_mask(prompt_length: int, length: int, device: torch.device | None = None) -> torch.Tensor:
    """``[1, 1, length, prompt_length + length]`` boolean: a completion's queries see its whole prompt and
    its own keys up to themselves."""
    query = torch.arange(length, device=device).view(-1, 1)
    key = torch.arange(prompt_length + length, device=device).view(1, -1) - prompt_length
    return (key <= query).view(1, 1, length, prompt_length + length)


def branch_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    branch_layout: tuple[Segment, ...] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function (``[B, H, L, D]`` in, ``[B, L, H, D]`` out): SDPA block by block
    over ``branch_layout`` (one row, covering it), or plain SDPA with ``attention_mask`` without one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if branch_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if query.shape[0] != 1:
        raise ValueError("branch attention takes one packed row per forward")
    kwargs.pop("is_causal", None)
    sizes = [n for _, prompt_length, lengths in branch_layout for n in (prompt_length, *lengths)]
    pieces = zip(*(torch.split(t, sizes, dim=2) for t in (query, key, value)), strict=True)  # one backward each
    parts = []
    for _, prompt_length, lengths in branch_layout:
        p_query, p_key, p_value = next(pieces)
        out, _ = sdpa_attention_forward(module, p_query, p_key, p_value, None, is_causal=True, **kwargs)
        parts.append(out)
        for length in lengths:
            c_query, c_key, c_value = next(pieces)
            if length:  # an empty completion has no queries
                out, _ = sdpa_attention_forward(
                    module,
                    c_query,
                    torch.cat([p_key, c_key], dim=2),
                    torch.cat([p_value, c_value], dim=2),
                    branch_mask(prompt_length, length, query.device),
                    is_causal=False,
                    **kwargs,
                )
                parts.append(out)
    return torch.cat(parts, dim=1), None


def _register() -> None:
    from transformers import AttentionInterface

    if BRANCH_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(BRANCH_ATTENTION, branch_sdpa)


@contextmanager
def branch_attention_for(config: Any) -> Iterator[None]:
    """Within the block, models with this ``config`` attend with :func:`branch_sdpa` (SDPA models only)."""
    _register()
    previous = config._attn_implementation
    config._attn_implementation = BRANCH_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous
