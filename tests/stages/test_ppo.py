import pytest
import torch
from test_grpo import TWO_OBJECTIVES
from toy import p_first_token, run_toy, toy_prompts, yes_no_model

from moalign.stages.ppo import PolicyWithValueHead


def test_value_head_starts_at_zero_and_keeps_the_policy_logits(tiny_llama_dir):
    from moalign.models import load_causal_lm

    lm = load_causal_lm(str(tiny_llama_dir))
    ids = torch.tensor([[1, 2, 3, 4]])
    logits, values = PolicyWithValueHead(lm)(ids, torch.ones_like(ids))
    assert values.shape == (1, 4) and bool((values == 0).all())
    assert torch.allclose(logits, lm(input_ids=ids).logits)


def test_ppo_raises_the_rewarded_answer(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    stage = {
        "ppo": {
            "dataset": str(toy_prompts(tmp_path)),
            "per_device_train_batch_size": 1,
            "num_generations": 8,
            "max_completion_length": 3,
            "max_steps": 6,
            "num_ppo_epochs": 2,
            "num_mini_batches": 2,
            "learning_rate": 3e-3,
            "bf16": False,
        }
    }
    run = run_toy(start, tmp_path, stage)
    before, after = p_first_token(start, "yes"), p_first_token(run.root / "01-ppo" / "model", "yes")
    assert 0.1 < before < 0.9
    assert after > before + 0.1
    steps = [m for m in run.metrics() if "train/loss" in m]
    assert len(steps) == 6
    assert all(
        {"kl", "gen/clipped_ratio", "ppo/value_loss", "ppo/entropy", "ppo/clip_fraction"} <= set(m) for m in steps
    )
    assert not any("value_head" in p.name for p in (run.root / "01-ppo" / "model").iterdir())


@pytest.mark.integration
def test_ppo_two_objectives_on_smollm2(tmp_path):
    stage = {
        "ppo": {
            "dataset": "builtin:ifeval-lite",
            "num_samples": 2,
            "max_steps": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_completion_length": 16,
            "num_ppo_epochs": 1,
        }
    }
    run = run_toy("builtin:smollm2-135m-instruct", tmp_path, stage, objectives=TWO_OBJECTIVES)
    assert any("reward/constraints/mean" in m and "reward/short/mean" in m for m in run.metrics())
