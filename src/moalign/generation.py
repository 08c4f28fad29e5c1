"""Batched chat generation with a Hugging Face causal LM (the one generation path of the project)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from moalign.cost import count_tokens

Chat = list[dict[str, str]]

BATCH_SIZE = 16
"""Prompts decoded together by default. Decoding a small model on CPU is bound by reading the weights
once per step, so a step of 16 rows costs about what a step of 8 costs (SmolLM2-135M on 2 cores:
about 130 ms either way, 75 ms for one row); ``moalign bench`` measures the resulting speedup."""


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
) -> list[list[Generation]]:
    """Generate ``num_return_sequences`` completions per prompt; returns one list per prompt.

    Prompts are tokenized once, sorted by token count and batched with left padding, so batches hold
    prompts of similar length and little compute goes to padding; each batch decodes with the KV
    cache and ends when all its rows have ended. The progress bar shows generated tokens per second.
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

    try:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        bar = tqdm(batches, desc=desc, unit="batch", disable=not progress)
        t0, tokens = time.perf_counter(), 0
        for batch in bar:
            enc = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt", padding=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            width = enc["input_ids"].shape[1]
            stop = {"stopping_criteria": [stop_criterion(sampling.stop, width, decode)]} if sampling.stop else {}
            seqs = model.generate(
                **enc,
                **sampling.generate_kwargs(),
                **stop,
                num_return_sequences=num_return_sequences,
                pad_token_id=tokenizer.pad_token_id,
            )
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
