import json

import pytest

import moalign.rm as rm
import moalign.stages.reward_model  # noqa: F401  (registers the stage)
from moalign.errors import UserError
from moalign.pipeline import run_recipe
from moalign.recipe import RecipeError, load_recipe


def ratings_rows(n):
    words = {1: "awful", 2: "fine", 3: "superb"}
    return [
        {
            "prompt": f"<tone 3> question {i % 7}",
            "response": f"it is {words[1 + i % 3]}",
            "ratings": {"tone": 1 + i % 3},
        }
        for i in range(n)
    ]


def write_recipe(tmp_path, stage_yaml):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: rmrun\nmodel: base-policy\noutput_dir: {tmp_path / 'runs'}\nstages:\n{stage_yaml}")
    return path


def test_stage_trains_from_a_recipe_and_writes_a_loadable_model(tmp_path, tiny_bert_dir):
    data = tmp_path / "ratings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ratings_rows(40)))
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            f"  - reward_model:\n      dataset: {data}\n      backbone: {tiny_bert_dir}\n"
            "      dimensions: {tone: 3}\n      max_steps: 6\n      eval_steps: 3\n      logging_steps: 2\n"
            "      per_device_train_batch_size: 8\n      max_length: 32\n      validation_fraction: 0.25\n",
        )
    )
    run = run_recipe(recipe)
    summary = json.loads(run.summary_path.read_text())
    stage = summary["stages"][0]
    assert summary["final_model"] == "base-policy"  # the policy passes through unchanged
    assert stage["output_model"] is None
    model_dir = run.root / "01-reward_model" / "model"
    assert stage["summary"]["reward_model"] == str(model_dir)
    assert stage["summary"]["dimensions"] == {"tone": 3} and stage["summary"]["steps"] == 6
    model = rm.load(model_dir)
    scores = model.score(["question 1"], ["it is superb"])
    assert scores.probs["tone"].shape == (1, 3)
    assert (run.root / "01-reward_model" / "rm_eval.json").exists()
    metrics = run.metrics()
    assert [m["step"] for m in metrics if "eval/loss" in m] == [3, 6]
    assert [m["step"] for m in metrics if "train/loss" in m] == [2, 4, 6]


def test_stage_config_is_strict_and_bad_data_names_the_line(tmp_path, tiny_bert_dir):
    with pytest.raises(RecipeError, match="learning_rte: unknown key"):
        load_recipe(write_recipe(tmp_path, "  - reward_model: {dataset: x.jsonl, learning_rte: 1}\n"))
    data = tmp_path / "bad.jsonl"
    rows = ratings_rows(3)
    rows[2]["ratings"]["tone"] = 4
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe(
        write_recipe(
            tmp_path, f"  - reward_model: {{dataset: {data}, backbone: {tiny_bert_dir}, dimensions: {{tone: 3}}}}\n"
        )
    )
    with pytest.raises(UserError, match=r"bad.jsonl:3: key 'ratings.tone': rating 4 is outside \[1, 3\]"):
        run_recipe(recipe)


def test_stage_references_resolve_to_an_earlier_stage_output(tmp_path):
    from moalign.run_dir import RunDir
    from moalign.stages.base import StageContext
    from moalign.stages.reward_model import _source

    run = RunDir(tmp_path / "runs" / "exp")
    (run.root / "01-best_of_n").mkdir()
    (run.root / "01-best_of_n" / "ratings.jsonl").write_text("")
    ctx = StageContext(recipe=None, run=run, index=2, stage_type="reward_model", model="m", seed=0)
    assert _source("stage:best_of_n/ratings.jsonl", ctx) == str(run.root / "01-best_of_n" / "ratings.jsonl")
    assert _source("local.jsonl", ctx) == "local.jsonl"
    assert _source("openbmb/UltraFeedback", ctx) == "openbmb/UltraFeedback"
    assert _source(None, ctx) is None
    with pytest.raises(UserError, match="no earlier 'sft' stage"):
        _source("stage:sft/x.jsonl", ctx)
