import pytest
from test_grpo import TWO_OBJECTIVES
from toy import p_first_token, run_toy, toy_prompts, yes_no_model

ONLINE_TOY = {"max_completion_length": 3, "bf16": False, "per_device_train_batch_size": 1}


def test_online_dpo_raises_the_rewarded_answer(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    stage = {
        "online_dpo": {
            "dataset": str(toy_prompts(tmp_path)),
            "num_generations": 4,
            "max_steps": 8,
            "learning_rate": 3e-3,
            "beta": 0.1,
            **ONLINE_TOY,
        }
    }
    run = run_toy(start, tmp_path, stage)
    before, after = p_first_token(start, "yes"), p_first_token(run.root / "01-online_dpo" / "model", "yes")
    assert 0.1 < before < 0.9
    assert after > before + 0.1
    steps = [m for m in run.metrics() if "train/loss" in m]
    assert len(steps) == 8
    assert all({"kl", "gen/mean_length", "gen/clipped_ratio", "dpo/pairs"} <= set(m) for m in steps)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout comes from the reference itself


def test_online_dpo_kl_bound_stops_the_run(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    stage = {
        "online_dpo": {
            "dataset": str(toy_prompts(tmp_path)),
            "num_generations": 4,
            "max_steps": 20,
            "learning_rate": 3e-3,
            "kl_bound": 1e-3,
            **ONLINE_TOY,
        }
    }
    run = run_toy(start, tmp_path, stage)
    stops = [m for m in run.metrics() if "safety/kl_stop" in m]
    assert len(stops) == 1 and stops[0]["step"] < 20
    assert (run.root / "01-online_dpo" / "model").is_dir()


@pytest.mark.integration
def test_online_dpo_two_objectives_on_smollm2(tmp_path):
    stage = {
        "online_dpo": {
            "dataset": "builtin:ifeval-lite",
            "num_samples": 2,
            "max_steps": 1,
            "per_device_train_batch_size": 2,
            "num_generations": 2,
            "max_completion_length": 16,
        }
    }
    run = run_toy("builtin:smollm2-135m-instruct", tmp_path, stage, objectives=TWO_OBJECTIVES)
    assert any("reward/constraints/mean" in m and "reward/short/mean" in m for m in run.metrics())
    assert any("kl" in m for m in run.metrics())
