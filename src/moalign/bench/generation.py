"""Evaluation-generation benchmark: :func:`moalign.generation.generate` versus a one-prompt-at-a-time loop.

Both sides decode the same chat prompts greedily, up to ``max_new_tokens`` each, with the same
model; tokens are counted up to (not including) the end-of-turn token.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from moalign.bench.workload import bench_prompts
from moalign.generation import BATCH_SIZE, SamplingConfig, chat_inputs, generate


@torch.inference_mode()
def naive_generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> int:
    """The baseline: ``model.generate`` on each prompt alone; returns the generated tokens (before EOS)."""
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    tokens = 0
    for text in chat_inputs(tokenizer, prompts):
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        tokens += next((j for j, tok in enumerate(new) if tok in eos_ids), len(new))
    return tokens


def time_generation(
    model: str,
    *,
    num_prompts: int = 16,
    max_new_tokens: int = 64,
    batch_size: int = BATCH_SIZE,
    variants: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Generated tokens per second both ways and ``speedup`` (batched over the loop).

    The baseline decodes in the weights' dtype (float32), as ``model.generate`` does; the project in its
    own precision (:func:`~moalign.generation.generate`: bf16 where the CPU runs it natively). Each of
    ``variants`` (name -> keyword arguments of ``generate``, e.g. ``{"bf16": False}``) is measured too.
    """
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.precision import resolve_bf16

    policy = load_causal_lm(model).eval()
    tokenizer = load_tokenizer(model)
    prompts = bench_prompts(num_prompts, seed=seed)
    generate(policy, tokenizer, prompts[:1], SamplingConfig(max_new_tokens=2), progress=False)  # warm-up

    start = time.perf_counter()
    naive_tokens = naive_generate(policy, tokenizer, prompts, max_new_tokens)
    naive_s = time.perf_counter() - start
    baseline = {"tokens": naive_tokens, "seconds": naive_s, "tokens_per_s": naive_tokens / naive_s, "bf16": False}

    def measure(bf16: bool | None = None) -> dict[str, Any]:
        sampling = SamplingConfig(max_new_tokens=max_new_tokens)
        start = time.perf_counter()
        out = generate(policy, tokenizer, prompts, sampling, batch_size=batch_size, progress=False, bf16=bf16)
        seconds = time.perf_counter() - start
        tokens = sum(g.num_tokens for gens in out for g in gens)
        rate = tokens / seconds
        speedup = rate / baseline["tokens_per_s"]
        return {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": rate,
            "bf16": resolve_bf16(bf16),
            "speedup": speedup,
        }

    project = measure()
    return {
        "model": model,
        "prompts": num_prompts,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "baseline": baseline,
        "project": project,
        "speedup": project["speedup"],
        "variants": {name: measure(**extra) for name, extra in (variants or {}).items()},
        "notes": [],
    }
