"""Options no shipped recipe uses, each run through a stage on a tiny model and checked by hand: the
Chebyshev scalarisations, MOSLIM's exponential moving statistics and RWR's length normalisation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from moalign.config.yaml_source import YamlSource
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe
from moalign.rewards import MultiObjectiveReward

RWR = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "num_generations": 2,
    "max_completion_length": 4,
    "learning_rate": 1e-3,
    "bf16": False,
}


def run_rwr(tmp_path, model, objectives, aggregator, prompts, **stage):
    data_file = tmp_path / "prompts.jsonl"
    data_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    data = {
        "name": "options",
        "model": str(model),
        "output_dir": str(tmp_path / "runs"),
        "objectives": objectives,
        "aggregator": aggregator,
        "stages": [{"rwr": {"dataset": str(data_file), **RWR, **stage}}],
    }
    return run_recipe(validate_recipe(YamlSource(data=data, name="test")))


def scorer_file(tmp_path):
    path = tmp_path / "scores.py"
    path.write_text(
        "def chars(prompts, completions, **columns):\n    return [len(c) / 10 for c in completions]\n"
        "def vowels(prompts, completions, **columns):\n"
        "    return [sum(ch in 'aeiou' for ch in c) / 4 for c in completions]\n"
        "def share(prompts, completions, **columns):\n    return [1 / (1 + len(c)) for c in completions]\n"
    )
    return path


@pytest.fixture
def aggregated(monkeypatch):
    """Every batch the reward aggregates during the stage: ``(score matrix, rewards)``."""
    seen: list[tuple[torch.Tensor, torch.Tensor, list]] = []
    original = MultiObjectiveReward.aggregate

    def aggregate(self, matrix):
        out = original(self, matrix)
        seen.append((matrix.values.clone(), out.clone(), list(matrix.tags)))
        return out

    monkeypatch.setattr(MultiObjectiveReward, "aggregate", aggregate)
    return seen


@pytest.mark.parametrize("aggregator", ["chebyshev", {"soft_chebyshev": {"tau": 0.5}}])
def test_chebyshev_scalarisations_through_an_rwr_stage(aggregator, aggregated, tiny_llama_dir, tmp_path):
    scores = scorer_file(tmp_path)
    objectives = [
        {"name": "chars", "scorer": {"python": {"function": f"{scores}:chars"}}, "weight": 2.0, "ideal": 1.0},
        {"name": "vowels", "scorer": {"python": {"function": f"{scores}:vowels"}}, "weight": 0.5, "ideal": 0.0},
    ]
    run_rwr(tmp_path, tiny_llama_dir, objectives, aggregator, ["Say hi", "Go on"])
    assert len(aggregated) == 2  # one batch per step
    for values, rewards, _ in aggregated:
        for (chars, vowels), reward in zip(values.tolist(), rewards.tolist(), strict=True):
            gaps = [2.0 * abs(chars - 1.0), 0.5 * abs(vowels - 0.0)]
            if aggregator == "chebyshev":  # -max_i w_i |s_i - ideal_i|
                expected = -max(gaps)
            else:  # -tau log sum_i exp(w_i |s_i - ideal_i| / tau)
                expected = -0.5 * math.log(sum(math.exp(g / 0.5) for g in gaps))
            assert reward == pytest.approx(expected)


def test_moslim_momentum_statistics_through_an_rwr_stage(aggregated, tiny_llama_dir, tmp_path):
    """Seed 002 eq. 11 with ``momentum: 0.5``: mean <- mean + m (batch mean - mean), each batch updating
    the statistics before it is mapped; checked against the stage's saved statistics."""
    scores = scorer_file(tmp_path)
    objectives = [
        {"name": "brevity", "scorer": {"python": {"function": f"{scores}:share"}}, "tag_dimension": "brevity"}
    ]
    run = run_rwr(tmp_path, tiny_llama_dir, objectives, {"moslim": {"momentum": 0.5}}, ["<brevity 3> Say hi"] * 2)
    batches = [values[:, 0] for values, _, _ in aggregated]
    assert len(batches) == 2
    mean, var = batches[0].mean().item(), batches[0].var(correction=0).item()
    for batch in batches[1:]:  # the exponential moving update of moslim.py
        delta = batch.mean().item() - mean
        mean, var = mean + 0.5 * delta, 0.5 * (var + 0.5 * delta**2) + 0.5 * batch.var(correction=0).item()
    saved = json.loads((run.root / "01-rwr" / "reward_state.json").read_text())
    count, saved_mean, saved_var = saved["moslim"]["stats"]["brevity:3"]
    assert count == sum(len(b) for b in batches)
    assert saved_mean == pytest.approx(mean) and saved_var == pytest.approx(var)
    last, rewards = batches[-1], aggregated[-1][1]  # k = all, one dimension: the z-score itself
    assert rewards.tolist() == pytest.approx(((last - mean) / max(math.sqrt(var), 1e-6)).tolist())


@pytest.mark.parametrize("normalize", [False, True])
def test_rwr_length_normalize_uses_the_mean_token_log_probability(normalize, tiny_llama_dir, tmp_path):
    """A random tiny model is near uniform over its 49,152 tokens: a token's log-probability is about
    -ln 49152 = -10.8, a 4-token completion's sum about -43; the mean per token stays near -10.8."""
    scores = scorer_file(tmp_path)
    objectives = [{"name": "chars", "scorer": {"python": {"function": f"{scores}:chars"}}}]
    run = run_rwr(tmp_path, tiny_llama_dir, objectives, "weighted_sum", ["Say hi"] * 2, length_normalize=normalize)
    logged = [m["rwr/sequence_logp"] for m in run.metrics() if "rwr/sequence_logp" in m]
    assert len(logged) == 2
    per_token = -math.log(49152)
    for value in logged:
        if normalize:
            assert value == pytest.approx(per_token, abs=1.0)
        else:
            assert value < 2 * per_token  # at least two tokens' worth: a sum, not a mean
