"""The ``eval`` recipe stage: evaluates the run's models, writes its outputs and the run's report."""

import json

import pytest

from moalign.atomic import atomic_write_json
from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.pipeline import run_recipe
from moalign.recipe import RecipeError, validate_recipe
from moalign.run_dir import RunDir
from moalign.stages import STAGES, StageContext
from moalign.stages.evaluate import candidate_labels, stage_model


def recipe(data):
    return validate_recipe(YamlSource(data=data, name="<test>"))


def test_eval_stage_is_registered_with_its_config():
    config = STAGES.get("eval").config_cls()
    assert config.models == [] and config.reference is None and config.decoding == "greedy"
    with pytest.raises(RecipeError, match="judgee"):
        recipe({"name": "x", "stages": [{"eval": {"judgee": "verifier"}}]})
    with pytest.raises(RecipeError, match="unknown scorer"):
        recipe({"name": "x", "stages": [{"eval": {"judge": "no_such_scorer"}}]})


def test_eval_stage_in_a_recipe_writes_outputs_and_report(tiny_llama_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n" for i in range(2)))
    r = recipe(
        {
            "name": "evalrun",
            "model": str(tiny_llama_dir),
            "stages": [
                {
                    "eval": {
                        "dataset": str(prompts),
                        "num_samples": 2,
                        "max_new_tokens": 4,
                        "judge": {"length": {"unit": "words"}},
                        "cache": False,
                        "bootstrap_resamples": 20,
                    }
                }
            ],
        }
    )
    run = run_recipe(r, output_dir=tmp_path / "runs")
    stage_dir = run.root / "01-eval"
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["models"]["reference"]["spec"] == str(tiny_llama_dir)  # the recipe's start model
    assert metrics["models"][tiny_llama_dir.name]["win_rate"]["n"] == 2
    assert len((stage_dir / "samples.jsonl").read_text().splitlines()) == 2
    assert (run.root / "report.html").exists()
    summary = json.loads(run.summary_path.read_text())
    assert f"eval/{tiny_llama_dir.name}/win_rate" in summary["stages"][0]["summary"]
    assert any("eval/reference/reward/mean" in m for m in run.metrics())


def test_stage_references_resolve_to_earlier_outputs(tmp_path):
    run = RunDir(tmp_path / "run")
    atomic_write_json(run.stage_dir(1, "sft") / "stage.json", {"output_model": "/ckpt/sft"})
    atomic_write_json(run.stage_dir(2, "dpo") / "stage.json", {"output_model": "/ckpt/dpo"})
    ctx = StageContext(recipe=recipe({"name": "x"}), run=run, index=3, stage_type="eval", model="/ckpt/dpo", seed=0)
    assert stage_model("stage:sft", ctx) == "/ckpt/sft"
    assert stage_model("some/dir", ctx) == "some/dir"
    assert candidate_labels(["stage:sft", "stage:dpo"], ctx) == {"sft": "/ckpt/sft", "dpo": "/ckpt/dpo"}
    with pytest.raises(UserError, match="no earlier 'rloo' stage"):
        stage_model("stage:rloo", ctx)
