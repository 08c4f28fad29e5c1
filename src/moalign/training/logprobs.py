"""Log-probabilities of completions under a causal LM."""

from __future__ import annotations

from typing import Any

import torch


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[t]`` at each position: logits ``[B, T, V]``, targets ``[B, T]`` -> ``[B, T]``."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def completion_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Summed log-probability of the completion tokens of each row: ``[B, T]`` inputs -> ``[B]``.

    ``completion_mask`` marks the tokens to score (1) among ``input_ids``; the first token is never
    scored (nothing predicts it).
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logps = token_logps(logits, input_ids[:, 1:])
    return (logps * completion_mask[:, 1:].to(logps.dtype)).sum(-1)


def join_prompt_completion(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask`` for prompt+completion rows."""
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    comp = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
        attn[i, : len(p) + len(c)] = 1
        comp[i, len(p) : len(p) + len(c)] = 1
    return ids, attn, comp
