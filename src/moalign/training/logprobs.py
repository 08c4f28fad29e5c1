"""Log-probabilities of completions under a causal LM.

The vocabulary is large (49,152 for SmolLM2) and a batch's logits ``[B, T, V]`` in float32 are the
largest tensor of a step. Two savings, both exact up to float32 rounding: the log-softmax is taken as
``logit[target] - logsumexp(logits)`` a block of rows at a time, which never materialises a second
``[B, T, V]`` tensor (``log_softmax`` does, and autograd keeps it); and :func:`completion_logps`
projects only the scored positions through the LM head, so prompt positions cost no vocabulary work.
"""

from __future__ import annotations

from dataclasses import dataclass
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


ROW_TOKENS = 2048
"""Token budget of one packed row: pairs share a row up to it (attention over a row costs its length squared)."""


@dataclass(frozen=True)
class PackedPairs:
    """Preference pairs packed as ``prompt + chosen + rejected`` segments, the prompt computed once per pair.

    Consecutive pairs share a row up to a token budget, so a batch carries almost no padding. Each
    pair's tokens attend to its own earlier tokens only, and its rejected tokens skip its chosen
    ones; positions restart at each pair and both completions continue from the prompt's end, so
    each completion sees exactly the context of its own ``prompt + completion`` row. Rows are
    right-padded; a padding position attends to itself only.
    """

    input_ids: torch.Tensor
    """``[R, L]``."""
    position_ids: torch.Tensor
    """``[R, L]``: from 0 over each prompt; both completions continue from the prompt's length."""
    attention_mask: torch.Tensor
    """``[R, 1, L, L]`` boolean, True where a query position attends a key position."""
    rows: torch.Tensor
    """``[K]`` row of each scored token."""
    predictors: torch.Tensor
    """``[K]`` position whose output predicts the scored token."""
    targets: torch.Tensor
    """``[K]`` the scored token."""
    sequences: torch.Tensor
    """``[K]`` ``i`` for a token of pair i's chosen completion, ``B + i`` for its rejected one."""
    num_pairs: int

    def to(self, device: Any) -> PackedPairs:
        moved = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return PackedPairs(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})


def pack_pairs(
    prompts: list[list[int]],
    chosen: list[list[int]],
    rejected: list[list[int]],
    pad_id: int,
    row_tokens: int = ROW_TOKENS,
) -> PackedPairs:
    """Pack pairs for :func:`pair_logps` (see :class:`PackedPairs`), in order, ``row_tokens`` per row at most
    (a longer pair takes a row of its own; ``row_tokens=0`` gives one pair per row).

    A pair costs ``P + C + R`` token positions instead of ``2P + C + R`` in two rows, and padding
    only fills the rows' ends.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every pair needs at least one prompt token (it predicts the first completion token)")
    n = len(prompts)
    layout: list[list[int]] = []  # pair indices per row
    used = 0
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected, strict=True)):
        size = len(p) + len(c) + len(r)
        if not layout or used + size > row_tokens:
            layout.append([])
            used = 0
        layout[-1].append(i)
        used += size
    width = max(sum(len(prompts[i]) + len(chosen[i]) + len(rejected[i]) for i in row) for row in layout)
    ids = torch.full((len(layout), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(layout), width), dtype=torch.long)
    segment = torch.full((len(layout), width), 3, dtype=torch.long)  # 0 prompt, 1 chosen, 2 rejected, 3 padding
    owner = torch.full((len(layout), width), -1, dtype=torch.long)  # the pair a position belongs to
    rows, predictors, targets, sequences = [], [], [], []
    for row, pairs in enumerate(layout):
        at = 0
        for i in pairs:
            p, c, r = prompts[i], chosen[i], rejected[i]
            lp, lc, lr = len(p), len(c), len(r)
            span = slice(at, at + lp + lc + lr)
            ids[row, span] = torch.tensor(p + c + r, dtype=torch.long)
            pos[row, span] = torch.cat([torch.arange(lp + lc), torch.arange(lp, lp + lr)])
            segment[row, span] = torch.tensor([0] * lp + [1] * lc + [2] * lr)
            owner[row, span] = i
            rows += [row] * (lc + lr)
            predictors += [at + lp - 1 + j for j in range(lc)]
            predictors += [at + (lp - 1 if j == 0 else lp + lc + j - 1) for j in range(lr)]
            targets += c + r
            sequences += [i] * lc + [n + i] * lr
            at += lp + lc + lr
    index = torch.arange(width)
    causal = index.view(1, -1, 1) >= index.view(1, 1, -1)  # [1, query, key]
    query, key = segment.unsqueeze(2), segment.unsqueeze(1)
    same_pair = owner.unsqueeze(2) == owner.unsqueeze(1)
    allowed = causal & same_pair & ~((query == 2) & (key == 1)) & (query != 3)
    allowed |= (query == 3) & torch.eye(width, dtype=torch.bool).unsqueeze(0)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return PackedPairs(
        input_ids=ids,
        position_ids=pos,
        attention_mask=allowed.unsqueeze(1),
        rows=as_long(rows),
        predictors=as_long(predictors),
        targets=as_long(targets),
        sequences=as_long(sequences),
        num_pairs=n,
    )


def pair_logps(
    model: Any, packed: PackedPairs, mask_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities ``([B], [B])`` of the chosen and rejected completions of packed pairs.

    One forward over the packed rows; logits are kept only at the positions that predict a scored
    token in some row (``logits_to_keep``), so the vocabulary projection skips the prompts. Equal to
    :func:`completion_logps` on separate ``prompt + completion`` rows within float32 rounding
    (checked by a test). ``model`` may be wrapped (PEFT, DDP, DeepSpeed): it is called, not unwrapped.
    The mask goes in as given: boolean for SDPA; ``mask_dtype`` turns it additive (0 or the dtype's
    minimum) for the eager attention.
    """
    mask = packed.attention_mask
    if mask_dtype is not None:
        blocked = torch.finfo(mask_dtype).min
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=mask.device).masked_fill(~mask, blocked)
    keep = torch.unique(packed.predictors)  # sorted
    logits = model(
        input_ids=packed.input_ids,
        attention_mask=mask,
        position_ids=packed.position_ids,
        logits_to_keep=keep,
        use_cache=False,
    ).logits
    logps = token_logps(logits[packed.rows, torch.searchsorted(keep, packed.predictors)], packed.targets)
    n = packed.num_pairs
    summed = torch.zeros(2 * n, dtype=logps.dtype, device=logps.device).index_add(0, packed.sequences, logps)
    return summed[:n], summed[n:]


def unpack_preference_batch(batch: dict[str, torch.Tensor]) -> tuple[list[list[int]], ...]:
    """``(prompts, chosen, rejected)`` token lists from TRL's preference batch (chosen rows, then rejected rows,
    right-padded, ``completion_mask`` over the completions).

    Raises ValueError when a pair's two rows do not start with the same prompt tokens.
    """
    ids, attention, completion = (batch[k].tolist() for k in ("input_ids", "attention_mask", "completion_mask"))
    n = len(ids) // 2
    split = []
    for row, att, comp in zip(ids, attention, completion, strict=True):
        length = sum(att)
        start = comp.index(1) if 1 in comp else length
        split.append((row[:start], row[start:length]))
    prompts = [split[i][0] for i in range(n)]
    if any(split[i][0] != split[n + i][0] for i in range(n)):
        raise ValueError("a pair's chosen and rejected rows start with different prompt tokens")
    return prompts, [split[i][1] for i in range(n)], [split[n + i][1] for i in range(n)]
