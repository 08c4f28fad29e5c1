"""Evaluation with a MOSLIM judge (seed 002 eq. 11) reads frozen statistics: a training stage's, or
statistics pooled over every evaluated model, so no model's numbers depend on the order of the list."""

from __future__ import annotations

import json
import sys

import pytest

from moalign.eval.evaluate import EvalSettings, evaluate
from moalign.eval.generations import CachedGeneration, GenerationRun
from moalign.rewards import MultiObjectiveReward
from moalign.rewards.objectives import REWARD_STATE_FILE

PROMPTS = ["<brevity 2> Describe rain.", "<brevity 4> Describe snow.", "<brevity 2> Name a fruit.", "Say hi."]
RESPONSES = {  # each model's responses, in prompt order
    "ref": ["a b c", "a b c d e f", "a", "hello"],
    "A": ["a b c d e f g h", "a", "a b", "hi"],
    "B": ["a b c d", "a b c d e f g h i j", "a b c d e f", "hey there"],
}


@pytest.fixture
def moslim_judge(tmp_path, monkeypatch):
    """A MOSLIM judge whose brevity head says ``p(target) = 1 / words`` (any deterministic number works)."""

    def fake_generate(spec, prompts, sampling, **kwargs):
        responses = [CachedGeneration(text=t, num_tokens=len(t.split())) for t in RESPONSES[spec]]
        return GenerationRun(responses=responses, fingerprint=spec, cached=0, generated_tokens=0, seconds=1.0)

    monkeypatch.setattr(sys.modules["moalign.eval.evaluate"], "cached_generate", fake_generate)
    scorer = tmp_path / "head.py"
    scorer.write_text("def p(prompts, completions, **columns):\n    return [1 / len(c.split()) for c in completions]\n")
    objectives = [{"name": "brevity", "scorer": {"python": {"function": f"{scorer}:p"}}, "tag_dimension": "brevity"}]
    return lambda: MultiObjectiveReward(objectives, {"moslim": {"k": "all", "momentum": 0.5}})


def run(candidates, judge, out):
    settings = EvalSettings(dataset="unused", num_samples=len(PROMPTS), bootstrap_resamples=20, perplexity=False)
    records = [{"prompt": p} for p in PROMPTS]
    return evaluate(candidates, "ref", settings, out, records=records, judge=judge, cache=None, progress=False)


def per_model(metrics):
    return {
        label: (m["reward"], m["objectives"], m["win_rate"], m["reward_diff"]) for label, m in metrics["models"].items()
    }


def test_permuting_the_candidates_changes_no_model_s_numbers(moslim_judge, tmp_path):
    forward = run({"A": "A", "B": "B"}, moslim_judge(), tmp_path / "ab")
    backward = run({"B": "B", "A": "A"}, moslim_judge(), tmp_path / "ba")
    assert per_model(forward) == per_model(backward)
    assert forward["judge"]["moslim_statistics"].startswith("pooled over the 3 evaluated models")
    # the statistics pool all three models: brevity@2 sees 1/3, 1, 1/8, 1/2, 1/4, 1/6
    judge = moslim_judge()
    run({"A": "A"}, judge, tmp_path / "a")  # another set of models pools other responses
    assert judge.moslim.stats[("brevity", 2)][0] == 4
    pooled = moslim_judge()
    run({"A": "A", "B": "B"}, pooled, tmp_path / "again")
    count, mean, _ = pooled.moslim.stats[("brevity", 2)]
    assert count == 6 and mean == pytest.approx((1 / 3 + 1 + 1 / 8 + 1 / 2 + 1 / 4 + 1 / 6) / 6)


def test_evaluation_reads_the_training_stage_s_statistics_and_leaves_them_unchanged(moslim_judge, tmp_path):
    trained = moslim_judge()
    trained(["<brevity 2> x", "<brevity 2> y", "<brevity 4> z"], ["a", "a b c d", "a b"])  # training batches
    stage = tmp_path / "run" / "03-grpo"
    stage.mkdir(parents=True)
    trained.save_trained_statistics(stage)
    (tmp_path / "run" / "02-sft").mkdir()
    other = json.loads((stage / REWARD_STATE_FILE).read_text())
    other["reward"]["objectives"][0]["weight"] = 2.0  # another reward: its statistics are not used
    (tmp_path / "run" / "04-rloo").mkdir()
    (tmp_path / "run" / "04-rloo" / REWARD_STATE_FILE).write_text(json.dumps(other))

    judge = moslim_judge()
    found = judge.load_trained_statistics(sorted((tmp_path / "run").iterdir(), reverse=True))
    assert found == "03-grpo"
    metrics = run({"A": "A", "B": "B"}, judge, tmp_path / "eval")
    assert metrics["judge"]["moslim_statistics"] == "03-grpo"
    assert judge.moslim.state_dict() == trained.moslim.state_dict()  # read, never updated
    # brevity@2 from training: p = 1, 1/4 -> mean 0.625, std 0.375; A's first answer (8 words): p = 1/8
    first = json.loads((tmp_path / "eval" / "samples.jsonl").read_text().splitlines()[0])
    assert first["scores"]["A"]["total"] == pytest.approx(round((1 / 8 - 0.625) / 0.375, 4))


def test_a_run_s_evaluation_uses_the_statistics_its_grpo_stage_trained_with(tiny_llama_dir, tmp_path):
    from moalign.config.yaml_source import YamlSource
    from moalign.pipeline import run_recipe
    from moalign.recipe import validate_recipe

    scorer = tmp_path / "head.py"
    scorer.write_text("def p(prompts, completions, **columns):\n    return [1 / (1 + len(c)) for c in completions]\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"<brevity {n}> Describe rain."}) + "\n" for n in (2, 4, 2, 4)))
    grpo = {
        "dataset": str(prompts),
        "max_steps": 1,
        "bf16": False,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 3,
    }
    evaluation = {"dataset": str(prompts), "max_new_tokens": 3, "cache": False, "bootstrap_resamples": 20}
    data = {
        "name": "moslim",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "objectives": [
            {"name": "brevity", "scorer": {"python": {"function": f"{scorer}:p"}}, "tag_dimension": "brevity"}
        ],
        "aggregator": "moslim",
        "stages": [{"grpo": grpo}, {"eval": evaluation}],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    saved = json.loads((run.root / "01-grpo" / REWARD_STATE_FILE).read_text())
    assert saved["moslim"]["stats"]["brevity:2"][0] >= 4  # the rollouts' statistics
    metrics = json.loads((run.root / "02-eval" / "metrics.json").read_text())
    # the intensities the rollouts saw use their statistics; one they never saw is pooled over the models
    source = metrics["judge"]["moslim_statistics"]
    seen = {key.replace(":", " ") for key in saved["moslim"]["stats"]}
    assert source.startswith("01-grpo") and all(key.replace(" ", ":") not in source for key in seen)
