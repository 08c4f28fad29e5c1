"""Recipes run end to end in forced bf16 on every machine: each stage kind's bf16 path (packed decoding
weights, branch attention, packed log-probabilities, the compact loop, the reward model, best-of-n, eval).

On a CPU without native bf16 kernels this runs torch's slow bf16 fallback, which the tiny models make
cheap, and the packed weights step aside; on one with them it runs the packed bf16 weights.
"""

from __future__ import annotations

import json
import warnings

import pytest

import test_paper_recipes as papers
from moalign import precision
from moalign.pipeline import run_recipe
from moalign.recipe import load_recipe

fixture_files = papers.fixture_files


@pytest.fixture
def bf16_everywhere(monkeypatch):
    """bf16 wherever a precision is left to the machine too (eval's generation), as on a bf16-native CPU."""
    monkeypatch.setattr(precision, "choose_bf16", lambda requested, **_: requested is not False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slow-bf16 warning of CPUs without native kernels
        yield


@pytest.mark.parametrize("name", ["seed004_sft_dpo_grpo", "seed002_moslim_rloo"])
def test_scaled_down_paper_recipe_runs_in_bf16(
    name, fixture_files, tiny_llama_dir, tiny_bert_dir, tmp_path, bf16_everywhere
):
    (path,) = [p for p in papers.PAPERS if p.stem == name]
    overrides = papers.scaled_down(path, fixture_files, tiny_llama_dir, tiny_bert_dir)  # each stage's bf16: false ...
    recipe = load_recipe(path, [*overrides, "precision=bf16"])  # ... overridden by the run-level precision
    assert all(s.config.bf16 for s in recipe.stages if hasattr(s.config, "bf16"))
    run = run_recipe(recipe, output_dir=tmp_path)
    summary = json.loads((run.root / "summary.json").read_text())
    assert [s["type"] for s in summary["stages"]] == [s.type for s in recipe.stages]


def test_best_of_n_and_the_compact_loop_run_in_bf16(tiny_llama_dir, tmp_path, bf16_everywhere):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Answer", "Say"]))
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"""name: bf16
model: {tiny_llama_dir}
output_dir: {tmp_path / "runs"}
precision: bf16
objectives:
  - {{name: short, scorer: {{length: {{unit: characters, target: 3}}}}}}
stages:
  - best_of_n: {{dataset: builtin:ifeval-lite, split: validation, num_prompts: 2, num_generations: 2,
                 max_new_tokens: 4}}
  - rwr: {{dataset: {prompts}, max_steps: 1, per_device_train_batch_size: 2, num_generations: 2,
           max_completion_length: 4}}
"""
    )
    run = run_recipe(load_recipe(path))
    assert (run.root / "01-best_of_n" / "samples.jsonl").exists()
    assert json.loads(run.summary_path.read_text())["stages"][1]["output_model"]
