"""A disk cache of generations keyed by (model fingerprint, prompt, decoding settings, seed).

Re-judging a set of responses with another judge, or rebuilding a report, never regenerates: each
(model, decoding settings, seed) has one JSONL file of ``{prompt, text, num_tokens}`` lines under the
cache root (default ``$MOALIGN_HOME/generations``), appended as each batch finishes, so an evaluation
that is stopped part-way resumes where it stopped: a rerun generates only the prompts not yet cached.
The model fingerprint
hashes the files that define the model (weights, configs, tokenizer), not its path, so a copied
checkpoint hits the cache and a retrained one at the same path misses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moalign.atomic import append_jsonl, read_jsonl
from moalign.generation import BATCH_SIZE, SamplingConfig

FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".jinja", ".txt")
EDGE_BYTES = 1 << 20
"""Bytes hashed from each end of a large file (with its size), so fingerprinting a checkpoint is quick."""


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= 2 * EDGE_BYTES:
            h.update(fh.read())
        else:
            h.update(fh.read(EDGE_BYTES))
            fh.seek(-EDGE_BYTES, 2)
            h.update(fh.read(EDGE_BYTES))
    return h.hexdigest()


def model_fingerprint(spec: str) -> str:
    """A short hash of the model ``spec`` names: over its files' names, sizes and contents (the ends of
    large files) for a local directory, chained to the base model's for a LoRA adapter; over the spec
    itself for a hub id not on disk."""
    from moalign.models import resolve_model
    from moalign.models.loading import ADAPTER_CONFIG, adapter_base

    resolved = Path(resolve_model(spec))
    h = hashlib.sha256()
    if not resolved.is_dir():
        h.update(f"hub:{spec}".encode())
        return h.hexdigest()[:16]
    for path in sorted(resolved.iterdir()):
        if path.is_file() and path.suffix in FINGERPRINT_SUFFIXES:
            h.update(f"{path.name}:{_file_digest(path)}\n".encode())
    if (resolved / ADAPTER_CONFIG).exists():
        h.update(f"base:{model_fingerprint(adapter_base(resolved))}".encode())
    return h.hexdigest()[:16]


def settings_key(sampling: SamplingConfig, seed: int, bf16: bool = False) -> str:
    """A short hash of the decoding settings, the precision (bf16 autocast or float32: their greedy tokens
    can differ) and the seed (which matters only when sampling)."""
    settings = {**asdict(sampling), "seed": seed if sampling.temperature > 0 else None}
    if bf16:
        settings["precision"] = "bf16"
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class CachedGeneration:
    """One response: its text and the number of generated tokens (before the end-of-turn token)."""

    text: str
    num_tokens: int


@dataclass
class GenerationRun:
    """Responses of one model for a list of prompts, and how many came from the cache."""

    responses: list[CachedGeneration]
    fingerprint: str
    cached: int
    generated_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float | None:
        return self.generated_tokens / self.seconds if self.generated_tokens and self.seconds > 0 else None


class GenerationCache:
    """Responses on disk, one JSONL file per (model fingerprint, decoding settings)."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from moalign.models import moalign_home

            root = moalign_home() / "generations"
        self.root = Path(root)

    def path(self, fingerprint: str, sampling: SamplingConfig, seed: int, bf16: bool = False) -> Path:
        return self.root / f"{fingerprint}-{settings_key(sampling, seed, bf16)}.jsonl"

    def lookup(
        self, fingerprint: str, sampling: SamplingConfig, seed: int, bf16: bool = False
    ) -> dict[str, CachedGeneration]:
        """Cached responses by prompt (the latest line wins)."""
        return {
            r["prompt"]: CachedGeneration(text=r["text"], num_tokens=int(r["num_tokens"]))
            for r in read_jsonl(self.path(fingerprint, sampling, seed, bf16))
        }

    def store(
        self,
        fingerprint: str,
        sampling: SamplingConfig,
        seed: int,
        items: Mapping[str, CachedGeneration],
        bf16: bool = False,
    ) -> None:
        """Append ``{prompt: generation}`` items (one batch, one fsync)."""
        lines = ({"prompt": p, **asdict(g)} for p, g in items.items())
        append_jsonl(self.path(fingerprint, sampling, seed, bf16), *lines)


ModelLoader = Callable[[str], tuple[Any, Any]]
"""``spec -> (tokenizer, model)``."""


def load_for_generation(spec: str) -> tuple[Any, Any]:
    """Tokenizer and causal LM of ``spec``, the model on the GPU when one is visible."""
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.rewards.scorers.base import default_device

    return load_tokenizer(spec), load_causal_lm(spec).to(default_device())


def cached_generate(
    spec: str,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    *,
    cache: GenerationCache | None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "generating",
    load: ModelLoader | None = None,
    bf16: bool | None = None,
) -> GenerationRun:
    """One response per prompt from model ``spec``: cached ones are read back, the rest generated one batch
    at a time (the model is loaded only if something is missing; ``load`` defaults to
    :func:`load_for_generation`), each batch stored as soon as it is done. ``cache=None`` always generates.

    Missing prompts are generated shortest first, so each batch pads little; one progress bar counts them.
    ``bf16`` is the decoding precision (:func:`~moalign.precision.resolve_bf16`: None decodes in
    bf16 where the device runs it natively); it is part of the cache key.
    """
    from tqdm.auto import tqdm

    from moalign.generation import generate
    from moalign.precision import resolve_bf16

    bf16 = resolve_bf16(bf16)
    fingerprint = model_fingerprint(spec)
    known = cache.lookup(fingerprint, sampling, seed, bf16) if cache is not None else {}
    missing = sorted(dict.fromkeys(p for p in prompts if p not in known), key=len)
    tokens, seconds = 0, 0.0
    if missing:
        from transformers import set_seed

        tokenizer, model = (load or load_for_generation)(spec)
        set_seed(seed)
        with tqdm(total=len(missing), desc=desc, unit="prompt", disable=not progress) as bar:
            for start in range(0, len(missing), batch_size):
                batch = missing[start : start + batch_size]
                t0 = time.perf_counter()
                outputs = generate(model, tokenizer, batch, sampling, batch_size=batch_size, progress=False, bf16=bf16)
                seconds += time.perf_counter() - t0
                done = {
                    p: CachedGeneration(text=g[0].text, num_tokens=g[0].num_tokens)
                    for p, g in zip(batch, outputs, strict=True)
                }
                known.update(done)
                tokens += sum(g.num_tokens for g in done.values())
                if cache is not None:
                    cache.store(fingerprint, sampling, seed, done, bf16)
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / max(seconds, 1e-9):.1f}", refresh=False)
        del model
    return GenerationRun(
        responses=[known[p] for p in prompts],
        fingerprint=fingerprint,
        cached=len(prompts) - len(missing),
        generated_tokens=tokens,
        seconds=seconds,
    )
