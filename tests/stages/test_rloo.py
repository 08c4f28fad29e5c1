import pytest
from test_grpo import TWO_OBJECTIVES
from toy import p_first_token, run_toy, toy_prompts, yes_no_model


def test_rloo_raises_the_rewarded_answer(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    stage = {
        "rloo": {
            "dataset": str(toy_prompts(tmp_path)),
            "per_device_train_batch_size": 8,
            "num_generations": 8,
            "max_completion_length": 3,
            "max_steps": 8,
            "learning_rate": 3e-3,
            "bf16": False,
        }
    }
    run = run_toy(start, tmp_path, stage)
    before, after = p_first_token(start, "yes"), p_first_token(run.root / "01-rloo" / "model", "yes")
    assert 0.1 < before < 0.9
    assert after > before + 0.1
    steps = [m for m in run.metrics() if "train/loss" in m]
    assert len(steps) == 8 and all({"kl", "gen/mean_length", "gen/clipped_ratio"} <= set(m) for m in steps)
    assert any("reward/yes/mean" in m for m in run.metrics())


@pytest.mark.integration
def test_rloo_two_objectives_on_smollm2(tmp_path):
    stage = {
        "rloo": {
            "dataset": "builtin:ifeval-lite",
            "num_samples": 2,
            "max_steps": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 16,
        }
    }
    run = run_toy("builtin:smollm2-135m-instruct", tmp_path, stage, objectives=TWO_OBJECTIVES)
    assert any("reward/constraints/mean" in m and "reward/short/mean" in m for m in run.metrics())
