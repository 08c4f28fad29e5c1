"""A recipe launched as two processes (torchrun, what ``accelerate launch`` runs underneath), on CPU with gloo.

Every process runs the stages; only the main one keeps the run directory: one lock, one config, each
metric logged once, one stage record and one final model per stage.
"""

import json
import os
import subprocess
import sys

import yaml


def test_two_launched_processes_share_one_run_directory(tmp_path, tiny_llama_dir):
    pairs = tmp_path / "pairs.jsonl"
    row = {
        "prompt": "Say yes.",
        "chosen": [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "no"}],
    }
    pairs.write_text((json.dumps(row) + "\n") * 4)
    small = {"max_steps": 1, "per_device_train_batch_size": 2, "bf16": False}
    recipe = {
        "name": "two",
        "model": str(tiny_llama_dir),
        "objectives": [{"name": "short", "scorer": {"length": {"unit": "words", "target": 3, "penalty": "over"}}}],
        "stages": [
            {"sft": {"dataset": str(pairs), "max_length": 64, **small}},
            {"rwr": {"dataset": str(pairs), "num_generations": 2, "max_completion_length": 4, **small}},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "moalign", "run"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, str(path), "--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run written to") == 2
    root = tmp_path / "runs" / "two"
    summary = json.loads((root / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["01-sft", "02-rwr"]
    for stage in ("01-sft", "02-rwr"):
        assert (root / stage / "stage.json").is_file() and (root / stage / "model" / "config.json").is_file()
    logged = [(m["stage"], m["step"], tuple(sorted(m))) for m in map(json.loads, (root / "metrics.jsonl").open())]
    assert len(logged) == len(set(logged)), "a metric was logged by more than one process"
