"""Log-probabilities of completions under a causal LM.

The vocabulary is large (49,152 for SmolLM2) and a batch's logits ``[B, T, V]`` in float32 are the
largest tensor of a step. Two savings, both exact up to float32 rounding: the log-softmax is taken as
``logit[target] - logsumexp(logits)`` a block of rows at a time, which never materialises a second
``[B, T, V]`` tensor (``log_softmax`` does, and autograd keeps it); and :func:`completion_logps`
projects only the scored positions through the LM head, so prompt positions cost no vocabulary work.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from moalign.generation import group_by_prompt
from moalign.precision import fast_path_dtype
from moalign.training.branch_attention import Segment, branch_attention_for

ROWS_PER_CHUNK = 1024
"""Rows of logits turned into float32 at a time (1024 x 49,152 float32 = 192 MiB)."""


def token_logps(
    logits: torch.Tensor, targets: torch.Tensor, chunk: int = ROWS_PER_CHUNK, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """``log softmax(logits)[t]`` at each position: logits ``[..., V]``, targets ``[...]`` -> ``[...]``.

    Computed as ``logits[t] - logsumexp(logits)`` in float32, ``chunk`` rows at a time; equal to
    ``log_softmax(logits.float()).gather(-1, t)`` within float32 rounding (checked by a test). With
    ``rows`` (``[K]``), logits are ``[U, V]`` and target ``k`` is scored against row ``rows[k]``: a row
    several targets share (the position predicting the first token of each completion of a prompt)
    is normalised once and never copied.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    if rows is not None:
        lse = [torch.logsumexp(flat[start : start + chunk].float(), dim=-1) for start in range(0, len(flat), chunk)]
        norm = torch.cat(lse) if lse else flat.new_zeros(0, dtype=torch.float32)
        return flat[rows, targets].float() - norm[rows]
    index = targets.reshape(-1, 1)
    parts = []
    for start in range(0, flat.shape[0], chunk):
        block = flat[start : start + chunk].float()
        parts.append(block.gather(-1, index[start : start + chunk]).squeeze(-1) - torch.logsumexp(block, dim=-1))
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
"""Token budget of one packed row: groups share a row up to it (attention over a row costs its length squared)."""


@dataclass(frozen=True)
class PackedCompletions:
    """Groups of completions of one prompt, packed as ``prompt + completion_1 + ... + completion_n`` segments.

    The prompt is computed once per group (a DPO pair: chosen and rejected; a GRPO group: its k
    samples). Consecutive groups share a row up to a token budget, so a batch carries almost no
    padding. A completion's tokens attend to their group's prompt and to their own earlier tokens
    only, and their positions continue from the prompt's end, so each completion sees exactly the
    context of its own ``prompt + completion`` row. Rows are right-padded; a padding position
    attends to itself only.
    """

    input_ids: torch.Tensor
    """``[R, L]``."""
    position_ids: torch.Tensor
    """``[R, L]``: from 0 over each prompt; every completion continues from its prompt's length."""
    attention_mask: torch.Tensor
    """``[R, 1, L, L]`` boolean, True where a query position attends a key position."""
    rows: torch.Tensor
    """``[K]`` row of each scored token."""
    predictors: torch.Tensor
    """``[K]`` position whose output predicts the scored token."""
    targets: torch.Tensor
    """``[K]`` the scored token."""
    sequences: torch.Tensor
    """``[K]`` the completion a scored token belongs to, numbered group by group in the given order."""
    offsets: torch.Tensor
    """``[K]`` the token's index within its completion."""
    num_sequences: int
    layout: tuple[tuple[Segment, ...], ...]
    """Per row, its segments ``(start, prompt_length, completion_lengths)`` in order (padding follows the last)."""

    def to(self, device: Any) -> PackedCompletions:
        moved = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return PackedCompletions(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})


def pack_completions(
    prompts: list[list[int]], completions: list[list[list[int]]], pad_id: int, row_tokens: int = ROW_TOKENS
) -> PackedCompletions:
    """Pack prompt ``i`` with its ``completions[i]`` (see :class:`PackedCompletions`), groups in order,
    ``row_tokens`` per row at most (a longer group takes a row of its own; 0 gives one group per row).

    A group of n completions costs ``P + sum C_j`` token positions instead of ``n P + sum C_j``.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (it predicts the first completion token)")
    sizes = [len(p) + sum(len(c) for c in group) for p, group in zip(prompts, completions, strict=True)]
    layout: list[list[int]] = []  # group indices per row
    used = 0
    for i, size in enumerate(sizes):
        if not layout or used + size > row_tokens:
            layout.append([])
            used = 0
        layout[-1].append(i)
        used += size
    width = max(sum(sizes[i] for i in row) for row in layout)
    ids = torch.full((len(layout), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(layout), width), dtype=torch.long)
    segment = torch.full((len(layout), width), -1, dtype=torch.long)  # 0 prompt, j + 1 completion j, -1 padding
    owner = torch.full((len(layout), width), -1, dtype=torch.long)  # the group a position belongs to
    first = [0]  # number of each group's first completion
    for group in completions:
        first.append(first[-1] + len(group))
    rows, predictors, targets, sequences, offsets = [], [], [], [], []
    segments: list[tuple[Segment, ...]] = []
    for row, groups in enumerate(layout):
        at = 0
        row_segments: list[Segment] = []
        for i in groups:
            p = prompts[i]
            row_segments.append((at, len(p), tuple(len(c) for c in completions[i])))
            span = slice(at, at + sizes[i])
            ids[row, span] = torch.tensor(p + [t for c in completions[i] for t in c], dtype=torch.long)
            pos[row, span] = torch.cat(
                [torch.arange(len(p))] + [torch.arange(len(p), len(p) + len(c)) for c in completions[i]]
            )
            segment[row, span] = torch.tensor([0] * len(p) + [j + 1 for j, c in enumerate(completions[i]) for _ in c])
            owner[row, span] = i
            start = at + len(p)
            for j, c in enumerate(completions[i]):
                rows += [row] * len(c)
                predictors += [at + len(p) - 1] + list(range(start, start + len(c) - 1)) if c else []
                targets += c
                sequences += [first[i] + j] * len(c)
                offsets += range(len(c))
                start += len(c)
            at += sizes[i]
        segments.append(tuple(row_segments))
    index = torch.arange(width)
    causal = index.view(1, -1, 1) >= index.view(1, 1, -1)  # [1, query, key]
    query, key = segment.unsqueeze(2), segment.unsqueeze(1)
    same_group = owner.unsqueeze(2) == owner.unsqueeze(1)
    allowed = causal & same_group & ((key == 0) | (key == query)) & (query >= 0)
    allowed |= (query < 0) & torch.eye(width, dtype=torch.bool).unsqueeze(0)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return PackedCompletions(
        input_ids=ids,
        position_ids=pos,
        attention_mask=allowed.unsqueeze(1),
        rows=as_long(rows),
        predictors=as_long(predictors),
        targets=as_long(targets),
        sequences=as_long(sequences),
        offsets=as_long(offsets),
        num_sequences=first[-1],
        layout=tuple(segments),
    )


PACKABLE_ATTENTION = ("sdpa", "eager")
"""Attention implementations that take packed rows: SDPA models attend branch by branch
(:mod:`moalign.training.branch_attention`), eager ones through the row's 4-D mask."""


def takes_packed_rows(model: Any) -> bool:
    """Whether ``model`` (possibly wrapped: PEFT, DDP, DeepSpeed) attends with a :data:`PACKABLE_ATTENTION`
    and computes in a dtype the packed paths take (:func:`~moalign.precision.fast_path_dtype`:
    float32 or bf16, autocast's when it is on)."""
    from accelerate.utils import extract_model_from_parallel

    unwrapped = extract_model_from_parallel(model)
    packable = unwrapped.config._attn_implementation in PACKABLE_ATTENTION
    return packable and fast_path_dtype(unwrapped.device.type, unwrapped.dtype) is not None


def recomputes_activations(model: torch.nn.Module) -> bool:
    """Whether a backward through ``model`` re-runs parts of its forward (gradient checkpointing, FSDP's
    activation checkpointing)."""
    return any(
        getattr(m, "gradient_checkpointing", False) or type(m).__name__ == "CheckpointWrapper" for m in model.modules()
    )


def packed_logits(model: Any, packed: PackedCompletions) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, rows)``: ``[U, V]`` logits at the distinct positions that predict a scored token of
    packed completions, and ``[K]`` the row of ``logits`` predicting each scored token (a prompt's last
    position predicts the first token of each of its completions; score with
    :func:`token_logps`'s ``rows``).

    One forward per packed row, cut to the row's last segment, each keeping logits only at the
    positions that predict one of its scored tokens (``logits_to_keep``), so the vocabulary
    projection skips the prompts and at most one row's ``[positions, V]`` logits exist at a time.
    ``model`` may be wrapped (PEFT, DDP, DeepSpeed): it is called, not unwrapped. An SDPA model
    attends with branch attention (the allowed blocks only), except where a backward would recompute
    the forward (checkpointing replays it with the model's own attention, which must save the same
    tensors): then, like an eager model, it takes the row's 4-D mask (additive for eager: 0 or the
    dtype's minimum).
    """
    from accelerate.utils import extract_model_from_parallel

    unwrapped = extract_model_from_parallel(model)
    implementation = unwrapped.config._attn_implementation
    mask = packed.attention_mask
    if implementation == "eager":
        blocked = torch.finfo(unwrapped.dtype).min
        mask = torch.zeros(mask.shape, dtype=unwrapped.dtype, device=mask.device).masked_fill(~mask, blocked)
    branches = implementation == "sdpa" and not (torch.is_grad_enabled() and recomputes_activations(unwrapped))
    parts, rows, kept = [], [], 0
    for row, segments in enumerate(packed.layout):  # scored tokens are listed row by row
        start, prompt_length, lengths = segments[-1]
        end = start + prompt_length + sum(lengths)
        predictors = packed.predictors[packed.rows == row]
        keep = torch.unique(predictors)  # sorted
        with branch_attention_for(unwrapped.config) if branches else contextlib.nullcontext():
            parts.append(
                model(
                    input_ids=packed.input_ids[row : row + 1, :end],
                    attention_mask=mask[row : row + 1, :, :end, :end],
                    position_ids=packed.position_ids[row : row + 1, :end],
                    logits_to_keep=keep,
                    use_cache=False,
                    **({"branch_layout": segments} if branches else {}),
                ).logits[0]
            )
        rows.append(kept + torch.searchsorted(keep, predictors))
        kept += len(keep)
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), torch.cat(rows)


def sequence_logps(model: Any, packed: PackedCompletions) -> torch.Tensor:
    """``[S]`` summed log-probability of each packed completion (see :func:`packed_logits`).

    Equal to :func:`completion_logps` on separate ``prompt + completion`` rows within float32
    rounding (checked by a test).
    """
    logits, rows = packed_logits(model, packed)
    logps = token_logps(logits, packed.targets, rows=rows)
    out = torch.zeros(packed.num_sequences, dtype=logps.dtype, device=logps.device)
    return out.index_add(0, packed.sequences, logps)


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


def unpack_completion_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_width: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """``(prompts, completions, columns)`` per row of TRL's online batch: ``[prompt | completion]`` rows whose
    last ``completion_width`` columns hold the completion; tokens are those under the attention mask, and
    ``columns`` gives each completion token's column within the completion part."""
    split = input_ids.shape[1] - completion_width
    ids, mask = input_ids.tolist(), attention_mask.tolist()
    prompts = [[row[j] for j in range(split) if keep[j]] for row, keep in zip(ids, mask, strict=True)]
    columns = [[j for j, m in enumerate(keep[split:]) if m] for keep in mask]
    completions = [[row[split + j] for j in cols] for row, cols in zip(ids, columns, strict=True)]
    return prompts, completions, columns


def pack_by_prompt(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> tuple[PackedCompletions, torch.Tensor]:
    """Rows ``prompts[i] + completions[i]`` grouped by identical prompt and packed (:func:`pack_completions`);
    also returns ``order``, ``order[s]`` being the row of packed sequence ``s``."""
    groups = group_by_prompt(prompts)
    packed = pack_completions([prompts[g[0]] for g in groups], [[completions[i] for i in g] for g in groups], pad_id)
    return packed, torch.tensor([i for g in groups for i in g])


def scatter_packed(
    values: torch.Tensor, packed: PackedCompletions, order: torch.Tensor, columns: list[list[int]], width: int
) -> torch.Tensor:
    """``[N, width]``: per-token ``values`` of packed completions put back into their rows, 0 elsewhere.

    ``values`` ``[K]`` holds one value per scored token of ``packed``, in its order; token ``o`` of packed
    completion ``s`` goes to row ``r = order[s]`` (:func:`pack_by_prompt`'s ``order``), column ``columns[r][o]``.
    ``columns`` states the rows' layout: ``[prompt | completion]`` rows scored at the completion's columns
    (TRL's online batches, :func:`unpack_completion_rows`), or predicted-token rows, where the token ``o`` of a
    completion after a prompt of length ``P`` sits at column ``P - 1 + o``.
    """
    rows = order[packed.sequences]
    longest = max((len(c) for c in columns), default=0)
    table = torch.tensor([c + [0] * (longest - len(c)) for c in columns], device=values.device)
    at = (rows, table[rows, packed.offsets])
    return torch.zeros((len(columns), width), dtype=values.dtype, device=values.device).index_put(at, values)


def prompt_completion_logps(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> torch.Tensor:
    """``[N]`` summed log-probability of ``completions[i]`` after ``prompts[i]``.

    Rows with the same prompt (a prompt's samples) are packed into one segment, the prompt computed
    once (:func:`pack_completions`), when the model's attention takes a custom mask; otherwise each
    row is its own padded ``prompt + completion`` row (:func:`completion_logps`). Either way the
    values are the same within float32 rounding. ``model`` may be wrapped (DDP, PEFT).
    """
    device = next(model.parameters()).device
    if not takes_packed_rows(model):
        ids, attn, comp = (t.to(device) for t in join_prompt_completion(prompts, completions, pad_id))
        return completion_logps(model, ids, attn, comp)
    packed, order = pack_by_prompt(prompts, completions, pad_id)
    logps = sequence_logps(model, packed.to(device))
    return torch.empty_like(logps).index_copy(0, order.to(device), logps)
