"""The toy task of the online-method tests: after a short SFT the tiny model answers yes or no; the reward
pays for yes, and a method passes if it raises P(yes) by a margin within a few steps."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

from moalign.config.yaml_source import YamlSource
from moalign.models import load_causal_lm, load_tokenizer
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe

SAYS_YES = {"name": "yes", "scorer": {"python": {"function": "toy:says_yes"}}}


def says_yes(prompts, completions, **columns):
    """The reward of the toy task: 1 for a completion that says yes, 0 otherwise."""
    return [1.0 if "yes" in c.lower() else 0.0 for c in completions]


def p_first_token(model_dir: str | Path, word: str) -> float:
    """P(first reply token = ``word``) for the toy prompt."""
    tok = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir))
    text = tok.apply_chat_template([{"role": "user", "content": "Answer"}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(ids).logits[0, -1].float(), -1)
    return probs[tok(word, add_special_tokens=False)["input_ids"][0]].item()


def toy_prompts(tmp_path: Path, n: int = 1) -> Path:
    """``n`` copies of the toy prompt as a jsonl file."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "Answer"}) + "\n" for _ in range(n)))
    return prompts


def sft_stage(tmp_path: Path) -> dict[str, Any]:
    """40 SFT steps on yes/no answers: leaves the tiny model a real choice between the two."""
    sft = tmp_path / "yes_no.jsonl"
    sft.write_text("".join(json.dumps({"prompt": "Answer", "response": w}) + "\n" for w in ["yes", "no"] * 8))
    return {
        "sft": {
            "dataset": str(sft),
            "max_steps": 40,
            "learning_rate": 1e-2,
            "bf16": False,
            "per_device_train_batch_size": 4,
        }
    }


@cache
def yes_no_model(tiny_llama_dir: Path, root: Path) -> Path:
    """The tiny model after the toy SFT, trained once per session."""
    root.mkdir(parents=True, exist_ok=True)
    data = {
        "name": "toy-sft",
        "model": str(tiny_llama_dir),
        "output_dir": str(root / "runs"),
        "stages": [sft_stage(root)],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="toy")))
    return run.root / "01-sft" / "model"


def run_toy(model_dir: Path, tmp_path: Path, stage: dict[str, Any], **recipe: Any) -> Any:
    """Run one online stage on the toy prompt from ``model_dir`` with the says-yes objective."""
    data = {
        "name": "toy",
        "model": str(model_dir),
        "output_dir": str(tmp_path / "runs"),
        "objectives": [SAYS_YES],
        "stages": [stage],
        **recipe,
    }
    return run_recipe(validate_recipe(YamlSource(data=data, name="test")))


SEEN: list[dict[str, Any]] = []
"""What :func:`recording_scorer` was called with (the tags test reads it)."""


def recording_scorer(prompts, completions, **columns):
    """A scorer that records the prompts and tags it receives and scores every sample 1."""
    SEEN.append({"prompts": list(prompts), "tags": list(columns["tags"])})
    return [1.0] * len(completions)
