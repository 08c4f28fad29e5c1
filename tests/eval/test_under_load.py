"""Evaluation over 10,000 prompts: generation is batched and cached as it goes, a stopped evaluation resumes
from the cache, and memory stays bounded. The model is a stand-in (no weights): its generate echoes."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

import moalign.eval.generations as generations
import moalign.generation
from moalign.eval import EvalSettings, GenerationCache, evaluate
from moalign.generation import Generation

N = 10_000
BATCH = 50
PEAK_BYTES = 16 * 2**20
"""Bound on the Python heap a 10,000-prompt evaluation may use once its modules are imported (records,
responses, scores and all; measured 7.4 MiB)."""


class StandInGenerator:
    """``generate`` of a model that answers every prompt with its first word; may stop after some batches."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.batches: list[int] = []
        self.stop_after = stop_after

    def __call__(self, model, tokenizer, prompts, sampling, **kwargs) -> list[list[Generation]]:
        if self.stop_after is not None and len(self.batches) == self.stop_after:
            raise KeyboardInterrupt  # the evaluation is stopped here
        self.batches.append(len(prompts))
        return [[Generation(i, p.split()[0], 1, [1])] for i, p in enumerate(prompts)]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    model = tmp_path / "stand-in"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setattr(generations, "load_for_generation", lambda spec: (None, None))
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"word{i} please answer prompt {i}"}) + "\n" for i in range(N)))
    settings = EvalSettings(
        dataset=str(data), num_samples=N, batch_size=BATCH, judge="length", perplexity=False, bootstrap_resamples=10
    )
    return str(model), settings, GenerationCache(tmp_path / "cache")


def run(setup, out: Path, generator: StandInGenerator, monkeypatch) -> dict:
    spec, settings, cache = setup
    monkeypatch.setattr(moalign.generation, "generate", generator)
    return evaluate({"model": spec}, spec, settings, out, cache=cache, progress=True)


def test_ten_thousand_prompts_in_bounded_memory_with_progress(setup, tmp_path, monkeypatch, capsys):
    spec, settings, cache = setup
    warm = settings.model_copy(update={"num_samples": 100})  # imports happen here, not in the measured run
    monkeypatch.setattr(moalign.generation, "generate", StandInGenerator())
    evaluate({"model": spec}, spec, warm, tmp_path / "warm", cache=None, progress=False)
    generator = StandInGenerator()
    tracemalloc.start()
    try:
        metrics = run(setup, tmp_path / "eval", generator, monkeypatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak / 2**20:.1f} MiB"
    assert generator.batches == [BATCH] * (N // BATCH)  # batched: never more than one batch at a time
    assert metrics["num_prompts"] == N and metrics["models"]["model"]["generation"]["cached"] == 0
    lines = (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == N and json.loads(lines[7])["responses"]["model"] == "word7"
    assert f"{N}/{N}" in capsys.readouterr().err  # the progress bar counted every prompt


def test_a_stopped_evaluation_resumes_from_the_cached_generations(setup, tmp_path, monkeypatch):
    spec, settings, cache = setup
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "eval", StandInGenerator(stop_after=30), monkeypatch)
    cached = list(cache.root.glob("*.jsonl"))
    assert len(cached) == 1 and len(cached[0].read_text().splitlines()) == 30 * BATCH  # written batch by batch
    assert not (tmp_path / "eval" / "metrics.json").exists()

    resumed = StandInGenerator()
    metrics = run(setup, tmp_path / "eval", resumed, monkeypatch)
    assert sum(resumed.batches) == N - 30 * BATCH  # only what was missing
    assert metrics["models"]["model"]["generation"]["cached"] == 30 * BATCH
    assert metrics["models"]["model"]["reward"]["n"] == N
