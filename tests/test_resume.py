"""Resuming a run: finished stages are kept, the recipe must match, one process per run directory."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from moalign.errors import UserError
from moalign.pipeline import recipe_differences, resume_run, run_recipe
from moalign.recipe import load_recipe
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
    first = json.loads((root / "01-test_flaky" / "stage.json").read_text())
    (root / "01-test_flaky" / "stage.json").write_text(json.dumps({**first, "wall_time_s": 1000.0}))
    monkeypatch.delenv(FAIL_ENV)
    run = run_recipe(recipe, resume=True)
    assert [(root / f"0{i}-test_flaky" / "runs.txt").read_text() for i in (1, 2, 3)] == ["x", "xx", "x"]
    summary = json.loads(run.summary_path.read_text())
    assert summary["final_model"] == "base+1+2+3"
    assert [s["summary"]["runs"] for s in summary["stages"]] == [1, 2, 1]
    # the run's time counts the stage the first command finished (1000 s), not only the resuming command's
    assert 1000.0 <= summary["wall_time_s"] < 1100.0
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


def test_rewind_drops_what_the_stage_logged_after_its_checkpoint_and_a_torn_line(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.metrics_size() == 0
    run.log_metrics({"a": 1}, stage="01-sft", step=5)
    run.log_metrics({"b": 1}, stage="02-rwr", step=1)
    at_checkpoint = run.metrics_size()
    assert at_checkpoint == len(run.metrics_path.read_bytes())
    run.log_metrics({"b": 2}, stage="02-rwr", step=2)
    run.log_metrics({"end": 0}, stage="02-rwr", step=1)  # e.g. a summary at the last step, after the checkpoint
    with open(run.metrics_path, "a") as fh:
        fh.write('{"stage": "02-rwr", "st')  # torn by a kill
    run.rewind_metrics("02-rwr", at_checkpoint)
    assert [(m["stage"], m["step"]) for m in run.metrics()] == [("01-sft", 5), ("02-rwr", 1)]
    assert run.metrics_size() == at_checkpoint  # kept lines are byte for byte the same
    run.log_metrics({"b": 2}, stage="02-rwr", step=2)  # appending after the rewind stays readable
    assert run.metrics()[-1]["b"] == 2
    run.rewind_metrics("02-rwr", None)  # no checkpoint: everything the stage logged goes
    assert [m["stage"] for m in run.metrics()] == ["01-sft"]


def test_resume_rewinds_metrics_to_the_latest_complete_checkpoint(tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path, "  - test_flaky\n  - test_flaky\n"))
    monkeypatch.setenv(FAIL_ENV, "2")
    with pytest.raises(RuntimeError):
        run_recipe(recipe)
    checkpoints = tmp_path / "runs" / "exp" / "02-test_flaky" / "checkpoints"
    save_checkpoint(checkpoints, 2, lambda tmp: (tmp / "w.bin").write_bytes(b"1"), {"metrics_bytes": 123})
    (checkpoints / "checkpoint-3").mkdir()  # a save the kill interrupted
    calls: list = []
    monkeypatch.setattr(RunDir, "rewind_metrics", lambda self, stage, size: calls.append((stage, size)))
    with pytest.raises(RuntimeError):
        run_recipe(recipe, resume=True)
    assert calls == [("02-test_flaky", 123)]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"]


def kill_resume_recipe(tmp_path, model_dir) -> Path:
    """SFT then RWR on the tiny model, each checkpointing every step; a length objective (no model) scores."""
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": "Answer", "response": w}) + "\n" for w in ["yes", "no"] * 8))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Answer", "Say", "Reply", "Go"]))
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"""name: killed
seed: 3
model: {model_dir}
output_dir: {tmp_path / "runs"}
objectives:
  - {{name: short, scorer: {{length: {{unit: characters, target: 3}}}}}}
stages:
  - sft: {{dataset: {sft}, max_steps: 4, save_steps: 1, learning_rate: 1.0e-2, bf16: false,
           per_device_train_batch_size: 4}}
  - rwr: {{dataset: {prompts}, max_steps: 4, save_steps: 1, learning_rate: 1.0e-3, bf16: false,
           per_device_train_batch_size: 2, num_generations: 2, max_completion_length: 4}}
"""
    )
    return path


def moalign_process(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "moalign", *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def trained_numbers(root: Path) -> tuple[list[dict], dict]:
    """The RWR stage's logged metrics (without timings) and the final model's weights."""
    from safetensors.torch import load_file

    def measured(key: str) -> bool:
        """Durations, speeds and the stage's cost record differ from run to run. Two trainer summaries cover
        only the steps since a resume: TRL's running count of trained tokens (``train/num_tokens``, not
        in its checkpoints) and transformers' end-of-training mean loss (``train/train_loss``)."""
        return (
            key in ("time", "train/num_tokens", "train/train_loss")
            or key.startswith(("time/", "stage/"))
            or key.endswith(("_per_s", "runtime", "second"))
        )

    metrics = [
        {k: v for k, v in m.items() if not measured(k)}
        for m in map(json.loads, (root / "metrics.jsonl").read_text().splitlines())
    ]
    return metrics, load_file(root / "02-rwr" / "model" / "model.safetensors")


def test_a_run_killed_at_random_points_and_resumed_ends_like_an_uninterrupted_one(tiny_llama_dir, tmp_path):
    """SIGKILL three times at seeded random points (after a random metrics line, plus a random delay, so
    some kills land inside a checkpoint write), resume each time: the metrics logged and
    the final weights equal an uninterrupted run's to 1e-6 (on CPU they are bitwise equal)."""
    rng = random.Random(20261122)
    recipe = kill_resume_recipe(tmp_path, tiny_llama_dir)
    reference_dir = tmp_path / "reference"
    reference = moalign_process("run", str(recipe), "--output-dir", str(reference_dir), log=tmp_path / "ref.log")
    assert reference.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    root = tmp_path / "runs" / "killed"
    metrics = root / "metrics.jsonl"
    # kill once the metrics file has this many lines (16 in all; SFT logs 6, each RWR step 2), and at least
    # one more than when the attempt started: two kills in SFT or early RWR, one inside RWR
    cuts = [*sorted(rng.sample(range(2, 9), 2)), rng.randint(10, 14)]
    kills = 0
    for attempt in range(4):
        log = tmp_path / f"attempt{attempt}.log"
        target = max(cuts[attempt], line_count(metrics) + 1) if attempt < 3 else 0
        process = moalign_process("run", str(recipe), "--resume", log=log)
        if attempt == 3:
            assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
            break
        while process.poll() is None and line_count(metrics) < target:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        returncode = process.wait()
        assert returncode in (0, -signal.SIGKILL), log.read_text()[-3000:]
        kills += returncode == -signal.SIGKILL
    assert kills >= 2

    expected_metrics, expected_weights = trained_numbers(reference_dir / "killed")
    got_metrics, got_weights = trained_numbers(root)
    assert [(m["stage"], m["step"]) for m in got_metrics] == [(m["stage"], m["step"]) for m in expected_metrics]
    for got, want in zip(got_metrics, expected_metrics, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            expected = pytest.approx(value, rel=1e-6, abs=1e-6) if isinstance(value, float) else value
            assert got[key] == expected, (got["stage"], got["step"], key)
    assert got_weights.keys() == expected_weights.keys()
    assert max((got_weights[k] - expected_weights[k]).abs().max().item() for k in got_weights) <= 1e-6
    assert not torch.equal(got_weights["model.norm.weight"], torch.ones_like(got_weights["model.norm.weight"]))
    summary = json.loads((root / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["01-sft", "02-rwr"]


def test_cli_resume_and_run_resume(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from moalign.cli import app

    path = write_recipe(tmp_path, THREE)
    monkeypatch.setenv(FAIL_ENV, "3")
    assert isinstance(CliRunner().invoke(app, ["run", str(path)]).exception, RuntimeError)
    monkeypatch.delenv(FAIL_ENV)
    root = tmp_path / "runs" / "exp"
    result = CliRunner().invoke(app, ["resume", str(root)])
    assert result.exit_code == 0, result.output
    assert f"run written to {root}" in result.output
    assert (root / "03-test_flaky" / "runs.txt").read_text() == "xx"
    assert (root / "01-test_flaky" / "runs.txt").read_text() == "x"
    changed = CliRunner().invoke(app, ["run", str(path), "--resume", "--set", "seed=1"])
    assert isinstance(changed.exception, UserError) and "seed: 0 -> 1" in str(changed.exception)
