"""The dry run: dataset checks, the stage graph and token budgets, worked by hand; every shipped recipe passes."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moalign.budget import sliced_size
from moalign.cli import app
from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.plan import dry_run, plan_recipe
from moalign.recipe import validate_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
UFB_ROW = {
    "prompt": "Q?",
    "prompt_id": "0",
    "chosen": [{"content": "Q?", "role": "user"}, {"content": "yes", "role": "assistant"}],
    "rejected": [{"content": "Q?", "role": "user"}, {"content": "no", "role": "assistant"}],
    "messages": [],
    "score_chosen": 8.0,
    "score_rejected": 2.0,
}


def recipe(stages, **top):
    return validate_recipe(YamlSource(data={"name": "t", "stages": stages, **top}, name="<test>"))


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(p.parents[1])) for p in RECIPES])
def test_every_shipped_recipe_passes_a_dry_run(path):
    from moalign.recipe import load_recipe

    plan = dry_run(load_recipe(path))
    assert len(plan.stages) == len(load_recipe(path).stages)


@pytest.mark.parametrize(
    ("split", "rows"),
    [("train", 1000), ("train[200:]", 800), ("train[:200]", 200), ("train[10%:20%]", 100), ("train[-50:]", 50)],
)
def test_sliced_split_sizes(split, rows):
    assert sliced_size(split, {"train": 1000}) == rows


def test_unknown_split_size_is_none():
    assert sliced_size("validation", {"train": 1000}) is None


def test_budgets_by_hand():
    plan = plan_recipe(
        recipe(
            [
                {
                    "sft": {
                        "dataset": {"adapter": "smoltalk"},
                        "num_samples": 100,
                        "per_device_train_batch_size": 4,
                        "gradient_accumulation_steps": 2,
                        "num_train_epochs": 2,
                        "max_length": 64,
                    }
                },
                {
                    "dpo": {
                        "dataset": {"adapter": "ultrafeedback_binarized", "split": "train_prefs[:1000]"},
                        "max_length": 100,
                    }
                },
                {
                    "rwr": {
                        "dataset": "builtin:ifeval-lite",
                        "max_steps": 3,
                        "per_device_train_batch_size": 2,
                        "num_generations": 4,
                        "max_completion_length": 10,
                    }
                },
            ],
            objectives=[{"name": "c", "scorer": "verifier"}],
        )
    )
    sft, dpo, rwr = (s.budget for s in plan.stages)
    assert (sft.steps, sft.sequences, sft.tokens, sft.total) == (25, 8, 64, 12_800)  # ceil(100*2/8)
    assert (dpo.steps, dpo.sequences, dpo.total) == (250, 8, 250 * 8 * 100)  # 1000 pairs / 4, chosen + rejected
    assert (rwr.steps, rwr.sequences, rwr.total) == (3, 8, 240)
    assert plan.total_tokens == 12_800 + 200_000 + 240
    assert not plan.problems


def test_a_sweep_multiplies_the_budget_by_its_runs():
    stages = [{"rwr": {"dataset": "builtin:ifeval-lite", "max_steps": 2, "max_completion_length": 10}}]
    objectives = [{"name": "c", "scorer": "verifier"}, {"name": "b", "scorer": "brevity"}]
    single = plan_recipe(recipe(stages, objectives=objectives))
    swept = plan_recipe(recipe(stages, objectives=objectives, sweep={"weights": [[1, 0], [0.5, 0.5], [0, 1]]}))
    assert single.total_tokens == 2 * 16 * 10  # 4 prompts x 4 samples per step
    assert swept.total_tokens == 3 * single.total_tokens


def test_references_must_name_earlier_stages():
    plan = plan_recipe(
        recipe(
            [
                {"dpo": {"dataset": "stage:best_of_n/pairs.jsonl"}},
                {"rwr": {"dataset": "builtin:ifeval-lite"}},
                {"reward_model": {"dataset": "stage:dpo/ratings.jsonl", "dimensions": {"x": 2}}},
            ],
            objectives=[
                {"name": "h", "scorer": {"multihead": {"model": "stage:reward_model/model", "dimension": "x"}}}
            ],
        )
    )
    assert plan.problems == [
        "01-dpo: 'stage:best_of_n/pairs.jsonl' names no earlier stage (earlier: none)",
        "02-rwr: 'stage:reward_model/model' names no earlier stage (earlier: dpo)",
    ]
    with pytest.raises(UserError, match="dry run of 't' failed"):
        dry_run(plan.recipe)


def test_an_adapter_must_give_the_records_its_stage_reads():
    plan = plan_recipe(recipe([{"dpo": {"dataset": {"adapter": "smoltalk"}}}]))
    assert plan.problems == ["01-dpo.dataset: stage 'dpo' reads preferences records, this spec gives sft"]


def test_local_files_are_checked_row_by_row(tmp_path):
    path = tmp_path / "ufb.jsonl"
    path.write_text(json.dumps(UFB_ROW) + "\n" + json.dumps({**UFB_ROW, "rejected": "oops"}) + "\n")
    plan = plan_recipe(recipe([{"dpo": {"dataset": {"adapter": "ultrafeedback_binarized", "path": str(path)}}}]))
    assert len(plan.problems) == 1
    assert plan.problems[0].endswith(
        "ufb.jsonl[train_prefs]: row 1: field 'rejected' (rejected) must be a non-empty list of messages "
        "(set on_malformed: skip to drop such rows)"
    )
    skip = {"adapter": "ultrafeedback_binarized", "path": str(path), "on_malformed": "skip"}
    lenient = plan_recipe(recipe([{"dpo": {"dataset": skip}}]))
    assert not lenient.problems
    assert lenient.stages[0].datasets[0].detail == (
        "preferences records ok (2 rows; 1 of the first 2 rows skipped, first: row 1: field 'rejected' (rejected) "
        "must be a non-empty list of messages)"
    )
    missing = plan_recipe(recipe([{"dpo": {"dataset": str(tmp_path / "none.jsonl")}}]))
    assert missing.problems == [f"01-dpo.dataset: {tmp_path / 'none.jsonl'}: dataset file not found"]


def test_unreachable_hub_sources_are_checked_on_the_schema_sample(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = plan_recipe(recipe([{"sft": {"dataset": {"adapter": "smoltalk"}}}]))
    assert plan.stages[0].datasets[0].detail.startswith("sft records ok (schema sample (hub unavailable")


def test_cli_dry_run_reports_and_fails_with_exit_code_2(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nstages:\n  - sft: {dataset: builtin:ifeval-lite, max_steps: 2}\n")
    result = CliRunner().invoke(app, ["run", str(good), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "01-sft" in result.output and "budget: 2 steps x 4 seq x 512 tok = 4.1k" in result.output
    assert not (tmp_path / "runs").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nstages:\n  - dpo: {dataset: 'stage:sft/x.jsonl'}\n")
    import sys

    from moalign.cli import main

    argv = sys.argv
    sys.argv = ["moalign", "run", str(bad), "--dry-run"]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = argv
    assert info.value.code == 2
