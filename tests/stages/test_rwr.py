import json

import pytest
from toy import SAYS_YES, p_first_token, sft_stage, toy_prompts

from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe


def test_rwr_with_a_reward_for_one_token_raises_its_probability(tiny_llama_dir, tmp_path):
    prompts = toy_prompts(tmp_path)
    data = {
        "name": "rwr",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "objectives": [SAYS_YES],
        "stages": [
            sft_stage(tmp_path),
            {
                "rwr": {
                    "dataset": str(prompts),
                    "per_device_train_batch_size": 1,
                    "num_generations": 8,
                    "max_completion_length": 3,
                    "max_steps": 8,
                    "learning_rate": 3e-3,
                    "bf16": False,
                }
            },
        ],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    before = p_first_token(str(run.root / "01-sft" / "model"), "yes")
    after = p_first_token(str(run.root / "02-rwr" / "model"), "yes")
    assert 0.1 < before < 0.9  # SFT left a real choice between yes and no
    assert after > before + 0.1
    logged = [m for m in run.metrics() if m["stage"] == "02-rwr" and "train/loss" in m]
    assert len(logged) == 8 and "gen/tokens_per_s" in logged[0]
    assert any("reward/yes/mean" in m for m in run.metrics())


def test_rwr_needs_objectives(tiny_llama_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Answer"}) + "\n")
    data = {
        "name": "x",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "stages": [{"rwr": {"dataset": str(prompts), "per_device_train_batch_size": 1}}],
    }
    with pytest.raises(UserError, match="needs the recipe's 'objectives'"):
        run_recipe(validate_recipe(YamlSource(data=data, name="test")))


@pytest.mark.integration
def test_rwr_on_real_smollm2_with_two_objectives_writes_a_loadable_checkpoint(smollm2_dir, tmp_path):
    data = {
        "name": "real",
        "model": "builtin:smollm2-135m-instruct",
        "output_dir": str(tmp_path / "runs"),
        "objectives": [
            {"name": "constraints", "scorer": "verifier"},
            {"name": "loops", "scorer": "repetition", "weight": -1.0},
        ],
        "stages": [
            {
                "rwr": {
                    "dataset": "builtin:ifeval-lite",
                    "num_samples": 2,
                    "per_device_train_batch_size": 2,
                    "num_generations": 2,
                    "max_completion_length": 8,
                    "max_steps": 1,
                }
            }
        ],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    logged = [m for m in run.metrics() if "train/loss" in m]
    assert len(logged) == 1 and any("reward/constraints/mean" in m for m in run.metrics())
    model_dir = run.model_spec(json.loads(run.summary_path.read_text())["final_model"])
    from moalign.models import load_causal_lm

    assert load_causal_lm(model_dir).config.num_hidden_layers == 30
