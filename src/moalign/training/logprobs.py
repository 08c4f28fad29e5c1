"""Log-probabilities of completions under a causal LM.

The vocabulary is large (49,152 for SmolLM2) and a batch's logits ``[B, T, V]`` in float32 are the
largest tensor of a step. Two savings, both exact up to float32 rounding: the log-softmax is taken as
``logit[target] - logsumexp(logits)`` a block of rows at a time, which never materialises a second
``[B, T, V]`` tensor (``log_softmax`` does, and autograd keeps it); and :func:`completion_logps`
projects only the scored positions through the LM head, so prompt positions cost no vocabulary work.
"""

from __future__ import annotations

from typing import Any

import torch

ROWS_PER_CHUNK = 1024
"""Rows of logits turned into float32 at a time (1024 x 49,152 float32 = 192 MiB)."""


def token_logps(logits: torch.Tensor, targets: torch.Tensor, chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """``log softmax(logits)[t]`` at each position: logits ``[..., V]``, targets ``[...]`` -> ``[...]``.

    Computed as ``logits[t] - logsumexp(logits)`` in float32, ``chunk`` rows at a time; equal to
    ``log_softmax(logits.float()).gather(-1, t)`` within float32 rounding (checked by a test).
    """
    flat = logits.reshape(-1, logits.shape[-1])
    index = targets.reshape(-1, 1)
    parts = []
    for start in range(0, flat.shape[0], chunk):
        rows = flat[start : start + chunk].float()
        parts.append(rows.gather(-1, index[start : start + chunk]).squeeze(-1) - torch.logsumexp(rows, dim=-1))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(targets.shape)


def _plain_lm_head(model: Any) -> torch.nn.Module | None:
    """The LM head when logits are exactly ``head(hidden)`` (no soft-capping or scaling); None otherwise."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_decoder"):
        return None
    if any(getattr(config, key, None) not in (None, 1.0) for key in ("final_logit_softcapping", "logit_scale")):
        return None
    head = model.get_output_embeddings()
    return head if isinstance(head, torch.nn.Linear) else None


def completion_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Summed log-probability of the completion tokens of each row: ``[B, T]`` inputs -> ``[B]``.

    ``completion_mask`` marks the tokens to score (1) among ``input_ids``; the first token is never
    scored (nothing predicts it). Where the model's logits are a plain linear head over its decoder's
    hidden states, only the positions that predict a scored token go through the head.
    """
    scored = completion_mask[:, 1:].bool()
    head = _plain_lm_head(model)
    if head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        logps = token_logps(logits, input_ids[:, 1:])
        return (logps * scored.to(logps.dtype)).sum(-1)
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    rows = scored.nonzero(as_tuple=True)
    logps = token_logps(head(hidden[rows]), input_ids[:, 1:][rows])
    return torch.zeros(input_ids.shape[0], dtype=logps.dtype, device=logps.device).index_add(0, rows[0], logps)


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
