"""Batched chat generation with a Hugging Face causal LM (the one generation path of the project)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from moalign.cost import count_tokens
from moalign.precision import fast_path_dtype, resolve_bf16

Chat = list[dict[str, str]]

BATCH_SIZE = 16
"""Prompts decoded together by default. Decoding a small model on CPU is bound by reading the weights
once per step, so a step of 16 rows costs far less than 16 steps of one (SmolLM2-135M on 2 cores,
packed weights: about 170 ms, 115 ms for 8 rows, 65 ms for one); ``moalign bench`` measures the
resulting speedup."""


def group_by_prompt(prompts: list[list[int]]) -> list[list[int]]:
    """Row indices grouped by identical prompt tokens, groups in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    """Stop strings: a completion ends with the token that completes the first of them (kept in the text)."""

    def generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.num_beams > 1:
            kw.update(length_penalty=self.length_penalty, early_stopping=True)
        return kw


def completion_end(ids: Sequence[int], eos_ids: set[int], decode: Any, stop: Sequence[str] = ()) -> tuple[int, bool]:
    """``(n, eos)``: the completion is ``ids[:n]``; ``eos`` says it ended with an end-of-turn token at ``ids[n]``.

    Without an end-of-turn token or stop string, ``n = len(ids)``. A stop string ends the completion with
    the token that completes it (``decode(ids[:n])`` is the first prefix containing one).
    """
    n = next((j for j, tok in enumerate(ids) if tok in eos_ids), len(ids))
    for m in range(1, n + 1) if stop else ():
        text = decode(ids[:m])
        if any(s in text for s in stop):
            return m, False
    return n, n < len(ids)


def stop_criterion(stop: Sequence[str], start: int, decode: Any) -> Any:
    """A ``transformers`` stopping criterion: a row is done once its generated part (from ``start``) contains
    a stop string. transformers' own ``stop_strings`` also match across the prompt's end (the chat
    template's trailing newline completes a ``"\\n\\n"`` stop), so it is not used."""
    from transformers import StoppingCriteria

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            done = [any(s in decode(row[start:].tolist()) for s in stop) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopStrings()


def _packed_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    return lambda x: torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "none", [], "")


@contextmanager
def packed_linear_weights(model: Any, rows: int) -> Iterator[None]:
    """Within the block, the ``nn.Linear`` layers of a CPU model multiply with oneDNN on weights reordered
    once for ``rows`` rows, in the dtype the layer computes in (inference only: the weights must not
    change inside).

    A decoding step multiplies a few rows by every weight matrix; the default CPU matmul re-packs the
    weight on each call, which costs more than the product at a few rows (SmolLM2-135M, 8 rows, 2
    cores: the LM head 20 ms -> 8 ms, a decoder layer's projections 1.0 ms -> 0.7 ms). Under bf16
    autocast the float32 weights are packed as bf16 copies (autocast would cast every weight at every
    step), where the CPU multiplies bf16 natively (AVX-512 BF16, AMX). Outputs equal the
    default matmul's within rounding (checked by a test in both precisions). A no-op off the CPU,
    outside ``no_grad``/``inference_mode``, without oneDNN, when already active, and where
    :func:`~moalign.precision.fast_path_dtype` steps aside; layers whose ``forward`` another
    wrapper replaced (accelerate's offloading hooks) are left alone.
    """
    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    active = getattr(model, "_moalign_packed_linears", False)
    if torch.is_grad_enabled() or reorder is None or not torch.backends.mkldnn.is_available() or active:
        yield
        return
    linears = [
        (m, dtype)
        for m in model.modules()
        if type(m) is torch.nn.Linear
        and m.weight.device.type == "cpu"
        and "forward" not in vars(m)
        and (dtype := fast_path_dtype("cpu", m.weight.dtype, onednn=True)) is not None
    ]
    try:
        model._moalign_packed_linears = True
        for module, dtype in linears:
            packed = reorder(module.weight.detach().to(dtype), rows)
            bias = None if module.bias is None else module.bias.detach().to(dtype)
            module.forward = _packed_linear(packed, bias)
        yield
    finally:
        for module, _ in linears:
            vars(module).pop("forward", None)
        model._moalign_packed_linears = False


@torch.no_grad()
def generate_shared_prefix(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
    """``model.generate(input_ids, attention_mask, **kwargs)`` with each distinct prompt prefilled once.

    Rows are left-padded prompts; rows holding the same prompt (GRPO's k samples of a prompt, best-of-n's
    samples) share one prefill: every distinct prompt but its last token runs through the model once,
    its key/value cache is copied to its rows, and ``generate`` goes on from the last prompt token.
    Positions are generate's own (from the attention mask), so each row decodes as it would alone;
    greedy outputs equal plain ``generate``'s (checked by a test). Without repeated prompts it is plain
    ``generate``. ``num_return_sequences`` must stay 1: repeat the rows instead. The linear layers run
    on packed weights (:func:`packed_linear_weights`).
    """
    with packed_linear_weights(model, rows=input_ids.shape[0]):
        return _generate_shared_prefix(model, input_ids, attention_mask, **kwargs)


def _generate_shared_prefix(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
    from transformers import DynamicCache

    keys = [ids + mask for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True)]
    groups = group_by_prompt(keys)  # rows with the same tokens and padding
    if len(groups) == len(keys) or input_ids.shape[1] < 2:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    first = torch.tensor([g[0] for g in groups], device=input_ids.device)
    group_of = {row: i for i, g in enumerate(groups) for row in g}
    rows = torch.tensor([group_of[row] for row in range(len(keys))], device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=input_ids[first, :-1],
        attention_mask=attention_mask[first, :-1],
        position_ids=positions[first, :-1],
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.reorder_cache(rows)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)


def as_chat(prompt: str | Chat) -> Chat:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def chat_inputs(tokenizer: Any, prompts: Sequence[str | Chat]) -> list[str]:
    """Prompts rendered with the tokenizer's chat template and the assistant turn opened."""
    return [tokenizer.apply_chat_template(as_chat(p), tokenize=False, add_generation_prompt=True) for p in prompts]


@dataclass
class Generation:
    prompt_index: int
    text: str
    num_tokens: int
    """Generated tokens before the end-of-turn token."""
    token_ids: list[int]
    """The generated ids, ending with the end-of-turn token when the model emitted one."""


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | Chat],
    sampling: SamplingConfig = SamplingConfig(),
    *,
    num_return_sequences: int = 1,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "generating",
    bf16: bool | None = None,
) -> list[list[Generation]]:
    """Generate ``num_return_sequences`` completions per prompt; returns one list per prompt.

    Prompts are tokenized once, sorted by token count and batched with left padding, so batches hold
    prompts of similar length and little compute goes to padding; a prompt's samples share its
    prefill (:func:`generate_shared_prefix`); each batch decodes with the KV cache and ends when all
    its rows have ended. The progress bar shows generated tokens per second.

    ``bf16`` (resolved by :func:`~moalign.precision.resolve_bf16`; None: where the device runs
    it natively) decodes under bf16 autocast, on bf16 copies of the packed weights; False in the weights'
    dtype, whatever autocast the caller set. On a CPU with AMX, SmolLM2 decodes about twice as fast in
    bf16 as in float32 at 16 rows (``moalign bench`` measures it).
    """
    from tqdm.auto import tqdm

    texts = chat_inputs(tokenizer, prompts)
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    out: list[list[Generation]] = [[] for _ in texts]
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=resolve_bf16(bf16))
    try:
        with autocast, packed_linear_weights(model, rows=batch_size * num_return_sequences):
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            bar = tqdm(batches, desc=desc, unit="batch", disable=not progress)
            t0, tokens = time.perf_counter(), 0
            for batch in bar:
                enc = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt", padding=True)
                enc = {k: v.to(model.device) for k, v in enc.items()}
                width = enc["input_ids"].shape[1]
                stop = {"stopping_criteria": [stop_criterion(sampling.stop, width, decode)]} if sampling.stop else {}
                kwargs = {**sampling.generate_kwargs(), **stop, "pad_token_id": tokenizer.pad_token_id}
                if sampling.num_beams > 1:  # the n best beams of one search
                    seqs = model.generate(**enc, **kwargs, num_return_sequences=num_return_sequences)
                else:  # n independent samples: rows repeated, their prompt prefilled once
                    rows = {k: v.repeat_interleave(num_return_sequences, dim=0) for k, v in enc.items()}
                    seqs = generate_shared_prefix(model, rows["input_ids"], rows["attention_mask"], **kwargs)
                new = seqs[:, width:]
                for row, ids in enumerate(new.tolist()):
                    n, ended = completion_end(ids, eos_ids, decode, sampling.stop)
                    kept = ids[: n + 1] if ended else ids[:n]
                    text = decode(ids[:n])
                    index = batch[row // num_return_sequences]
                    out[index].append(Generation(prompt_index=index, text=text, num_tokens=n, token_ids=kept))
                    tokens += n
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):.1f}", refresh=False)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
        count_tokens(generated=sum(len(g.token_ids) for gens in out for g in gens))
    return out
