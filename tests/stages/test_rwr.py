import json

import pytest
import torch

from moalign.config.recipe import validate_recipe
from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.models import load_causal_lm, load_tokenizer
from moalign.pipeline import run_recipe


def says_yes(prompts, completions, **columns):
    """The reward of the toy task: 1 for a completion that says yes, 0 otherwise."""
    return [1.0 if "yes" in c.lower() else 0.0 for c in completions]


def p_first_token(model_dir, word: str) -> float:
    tok = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Answer"}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(ids).logits[0, -1].float(), -1)
    return probs[tok(word, add_special_tokens=False)["input_ids"][0]].item()


def test_rwr_with_a_reward_for_one_token_raises_its_probability(tiny_llama_dir, tmp_path):
    sft = tmp_path / "yes_no.jsonl"
    sft.write_text("".join(json.dumps({"prompt": "Answer", "response": w}) + "\n" for w in ["yes", "no"] * 8))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Answer"}) + "\n")
    data = {
        "name": "rwr",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "objectives": [{"name": "yes", "scorer": {"python": {"function": "test_rwr:says_yes"}}}],
        "stages": [
            {
                "sft": {
                    "dataset": str(sft),
                    "max_steps": 40,
                    "learning_rate": 1e-2,
                    "bf16": False,
                    "per_device_train_batch_size": 4,
                }
            },
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
