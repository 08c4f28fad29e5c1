"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from moalign.training.logprobs import join_prompt_completion
from moalign.training.online import ScoredRollout


@pytest.fixture
def scored_rollout():
    """``build(prompt_ids, completion_ids, group_size)``: a :class:`ScoredRollout` of those token lists,
    padded as the compact loop pads them (pad id 0)."""

    def build(prompt_ids: list[list[int]], completion_ids: list[list[int]], group_size: int) -> ScoredRollout:
        ids, attn, comp = join_prompt_completion(prompt_ids, completion_ids, pad_id=0)
        n = len(prompt_ids)
        return ScoredRollout(
            prompts=["p"] * n,
            completions=["c"] * n,
            prompt_ids=prompt_ids,
            completion_ids=completion_ids,
            columns={},
            group_size=group_size,
            input_ids=ids,
            attention_mask=attn,
            completion_mask=comp,
        )

    return build
