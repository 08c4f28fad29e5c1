"""On-policy rollouts: k sampled completions per prompt, as text (for the scorers) and ids (for training)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moalign.generation import Chat, SamplingConfig, chat_inputs, generate


@dataclass
class Rollout:
    """``B * k`` samples, grouped by prompt: sample ``i`` belongs to prompt ``i // k``."""

    prompts: list[Any]
    """Each sample's prompt as given (text with its tags, or a chat)."""
    completions: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    columns: dict[str, list[Any]]
    """The prompts' other dataset columns, repeated per sample (constraints, tags...)."""
    group_size: int

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)


def sample_rollout(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | Chat],
    columns: dict[str, list[Any]],
    group_size: int,
    sampling: SamplingConfig,
    *,
    batch_size: int = 16,
    bf16: bool | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each prompt with the current policy (in bf16 or not: see
    :func:`~moalign.generation.generate`)."""
    generations = generate(
        model,
        tokenizer,
        prompts,
        sampling,
        num_return_sequences=group_size,
        batch_size=batch_size,
        progress=False,
        bf16=bf16,
    )
    encoded = tokenizer(chat_inputs(tokenizer, prompts), add_special_tokens=False)["input_ids"]
    rows = [(i, g) for i, gens in enumerate(generations) for g in gens]
    return Rollout(
        prompts=[prompts[i] for i, _ in rows],
        completions=[g.text for _, g in rows],
        prompt_ids=[list(encoded[i]) for i, _ in rows],
        completion_ids=[g.token_ids for _, g in rows],
        columns={name: [values[i] for i, _ in rows] for name, values in columns.items()},
        group_size=group_size,
    )
