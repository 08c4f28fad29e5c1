import json

import pytest
import yaml

from moalign.errors import UserError
from moalign.pipeline import run_recipe
from moalign.recipe import load_recipe


def recipe(tmp_path, stages: str):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: exp\nmodel: base\noutput_dir: {tmp_path / 'runs'}\nstages:\n{stages}")
    return load_recipe(path)


def test_run_writes_config_metrics_stage_records_and_summary(tmp_path):
    run = run_recipe(recipe(tmp_path, "  - test_echo: {note: one}\n  - test_echo: {learning_rate: 0.5}\n"))
    assert run.root == tmp_path / "runs" / "exp"
    resolved = yaml.safe_load(run.config_path.read_text())
    assert resolved["stages"][1] == {
        "test_echo": {"learning_rate": 0.5, "per_device_train_batch_size": 2, "note": "", "fail": False}
    }
    # each stage starts from the previous stage's output model
    assert (run.root / "01-test_echo" / "echo.txt").read_text() == "base"
    assert (run.root / "02-test_echo" / "echo.txt").read_text() == "base+1"
    summary = json.loads(run.summary_path.read_text())
    assert summary["final_model"] == "base+1+2"
    assert [s["summary"] for s in summary["stages"]] == [{"note": "one"}, {"note": ""}]
    losses = [m for m in run.metrics() if "train/loss" in m]
    assert [(m["stage"], m["step"], m["train/loss"]) for m in losses] == [
        ("01-test_echo", 1, 1e-5),
        ("02-test_echo", 1, 0.5),
    ]
    assert all("time" in m for m in run.metrics())


def test_existing_run_is_not_clobbered_without_overwrite(tmp_path):
    run_recipe(recipe(tmp_path, "  - test_echo\n"))
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        run_recipe(recipe(tmp_path, "  - test_echo\n"))
    run_recipe(recipe(tmp_path, "  - test_echo\n"), overwrite=True)


def test_failed_stage_writes_no_summary(tmp_path):
    with pytest.raises(RuntimeError):
        run_recipe(recipe(tmp_path, "  - test_echo\n  - test_echo: {fail: true}\n"))
    root = tmp_path / "runs" / "exp"
    assert (root / "01-test_echo" / "stage.json").exists()
    assert not (root / "02-test_echo" / "stage.json").exists()
    assert not (root / "summary.json").exists()
