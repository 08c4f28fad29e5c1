"""Resuming a run: finished stages are kept, the recipe must match, one process per run directory."""

import json
import os
import subprocess
import sys

import pytest

from moalign.config import load_recipe
from moalign.errors import UserError
from moalign.pipeline import recipe_differences, resume_run, run_recipe
from moalign.run_dir import RunDir
from moalign.stages import STAGES, StageResult, register_stage
from moalign.training.checkpoint import save_checkpoint

FAIL_ENV = "MOALIGN_TEST_FAIL_STAGE"


class _FlakyConfig(STAGES.get("test_echo").config_cls):
    pass


if "test_flaky" not in STAGES:

    @register_stage("test_flaky", _FlakyConfig)
    def _run_flaky(ctx, config) -> StageResult:
        """Counts its runs in its directory, logs steps 1..3, and fails while ``$MOALIGN_TEST_FAIL_STAGE`` names it."""
        runs = ctx.dir / "runs.txt"
        runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
        for step in (1, 2, 3):
            ctx.log({"train/loss": float(step)}, step=step)
        if os.environ.get(FAIL_ENV) == str(ctx.index):
            raise RuntimeError("killed")
        return StageResult(model=f"{ctx.model}+{ctx.index}", summary={"runs": len(runs.read_text())})


def write_recipe(tmp_path, stages: str, name: str = "exp"):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: {name}\nmodel: base\noutput_dir: {tmp_path / 'runs'}\nstages:\n{stages}")
    return path


THREE = "  - test_flaky\n  - test_flaky\n  - test_flaky\n"


def test_resume_skips_finished_stages_and_reruns_the_interrupted_one(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path, THREE))
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError, match="killed"):
        run_recipe(recipe)
    root = tmp_path / "runs" / "exp"
    assert not (root / "02-test_flaky" / "stage.json").exists()
    monkeypatch.delenv(FAIL_ENV)
    run = run_recipe(recipe, resume=True)
    assert [(root / f"0{i}-test_flaky" / "runs.txt").read_text() for i in (1, 2, 3)] == ["x", "xx", "x"]
    summary = json.loads(run.summary_path.read_text())
    assert summary["final_model"] == "base+1+2+3"
    assert [s["summary"]["runs"] for s in summary["stages"]] == [1, 2, 1]
    # the interrupted stage's metrics are logged once, not once per attempt
    steps = [(m["stage"], m["step"]) for m in run.metrics() if "train/loss" in m]
    assert steps == [(f"0{i}-test_flaky", s) for i in (1, 2, 3) for s in (1, 2, 3)]


def test_resume_dir_uses_the_saved_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1")
    with pytest.raises(RuntimeError):
        run_recipe(load_recipe(write_recipe(tmp_path, THREE)))
    monkeypatch.delenv(FAIL_ENV)
    write_recipe(tmp_path, "  - test_flaky\n")  # the file changed since: the run keeps its own copy
    run = resume_run(tmp_path / "runs" / "exp")
    assert json.loads(run.summary_path.read_text())["final_model"] == "base+1+2+3"


def test_resume_with_a_different_recipe_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1")
    with pytest.raises(RuntimeError):
        run_recipe(load_recipe(write_recipe(tmp_path, THREE)))
    stages = "  - test_flaky\n  - test_flaky: {learning_rate: 0.5}\n  - test_flaky\n"
    changed = load_recipe(write_recipe(tmp_path, stages), ["seed=3"])
    config = tmp_path / "runs" / "exp" / "config.resolved.yaml"
    with pytest.raises(UserError) as err:
        run_recipe(changed, resume=True)
    assert str(err.value).startswith(f"{config}: the recipe differs from the one this run was started with (")
    assert "seed: 0 -> 3" in str(err.value)
    assert "stages[1].test_flaky.learning_rate: 1e-05 -> 0.5" in str(err.value)
    assert err.value.exit_code == 2


def test_resume_without_a_run_starts_one_and_overwrite_excludes_resume(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n"))
    run = run_recipe(recipe, resume=True)
    assert run.summary_path.exists()
    with pytest.raises(UserError, match="--overwrite and --resume exclude each other"):
        run_recipe(recipe, resume=True, overwrite=True)
    with pytest.raises(UserError, match="already exists; pass --overwrite to replace it or --resume to continue it"):
        run_recipe(recipe)


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match=f"'{tmp_path}' is not a run directory"):
        resume_run(tmp_path)


def test_recipe_differences_names_each_changed_key():
    saved = {"seed": 0, "stages": [{"sft": {"lr": 1}}], "objectives": []}
    given = {"seed": 0, "stages": [{"sft": {"lr": 2, "extra": 1}}], "objectives": [{"name": "a"}]}
    assert recipe_differences(saved, given) == [
        "stages[0].sft.lr: 1 -> 2",
        "stages[0].sft.extra: '<absent>' -> 1",
        "objectives: [] -> [{'name': 'a'}]",
    ]
    assert recipe_differences(saved, saved) == []


def test_a_run_directory_in_use_is_refused_with_the_holders_pid(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n"))
    run = RunDir(tmp_path / "runs" / "exp")
    with run.locked():
        with pytest.raises(UserError) as err:
            run_recipe(recipe, resume=True)
        assert str(err.value).startswith(f"run directory '{run.root}' is in use by process {os.getpid()} ")
        assert not run.config_path.exists()  # nothing written by the refused run
    run_recipe(recipe, resume=True)  # released


def test_a_stale_lock_file_from_a_killed_process_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from moalign.run_dir import RunDir\n"
            f"with RunDir({str(tmp_path / 'runs' / 'exp')!r}).locked():\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n"))
    with pytest.raises(UserError, match=f"in use by process {holder.pid} "):
        run_recipe(recipe)
    holder.kill()
    holder.wait()
    assert (tmp_path / "runs" / "exp" / "run.lock").read_text().strip() == str(holder.pid)  # the file stays
    assert run_recipe(recipe).summary_path.exists()


def test_overwrite_keeps_the_lock_file(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n"))
    run_recipe(recipe)
    run = run_recipe(recipe, overwrite=True)
    assert sorted(p.name for p in run.root.iterdir()) == [
        "01-test_flaky",
        "config.resolved.yaml",
        "metrics.jsonl",
        "run.lock",
        "summary.json",
    ]


def test_rewind_drops_the_stage_metrics_after_its_checkpoint_and_a_torn_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_metrics({"a": 1}, stage="01-sft", step=5)
    for step in (1, 2, 3):
        run.log_metrics({"b": step}, stage="02-rwr", step=step)
    run.log_metrics({"c": 0}, stage="02-rwr")
    with open(run.metrics_path, "a") as fh:
        fh.write('{"stage": "02-rwr", "st')  # torn by a kill
    run.rewind_metrics("02-rwr", 2)
    assert [(m["stage"], m["step"]) for m in run.metrics()] == [("01-sft", 5), ("02-rwr", 1), ("02-rwr", 2)]
    run.log_metrics({"b": 3}, stage="02-rwr", step=3)  # appending after the rewind stays readable
    assert run.metrics()[-1]["b"] == 3


def test_resume_rewinds_metrics_to_the_latest_complete_checkpoint(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n  - test_flaky\n"))
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError):
        run_recipe(recipe)
    checkpoints = tmp_path / "runs" / "exp" / "02-test_flaky" / "checkpoints"
    save_checkpoint(checkpoints, 2, lambda tmp: (tmp / "w.bin").write_bytes(b"1"), {})
    (checkpoints / "checkpoint-3").mkdir()  # a save the kill interrupted
    monkeypatch.setattr(
        "moalign.run_dir.RunDir.rewind_metrics",
        lambda self, stage, through_step: calls.append((stage, through_step)),
    )
    calls: list = []
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError):
        run_recipe(recipe, resume=True)
    assert calls == [("02-test_flaky", 2)]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"]
