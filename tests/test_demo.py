"""The main job end to end: ``moalign demo --fast`` on the real SmolLM2, offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moalign.cli import app

STAGES = ["best_of_n", "sft", "dpo", "reward_model", "grpo", "eval"]


@pytest.mark.integration
def test_demo_fast_runs_every_stage_and_prints_the_table(tmp_path, smollm2_dir):
    result = CliRunner().invoke(app, ["demo", "--fast", "--set", f"output_dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "demo"
    summary = json.loads((run / "summary.json").read_text())
    assert [s["type"] for s in summary["stages"]] == STAGES
    assert (run / "report.html").stat().st_size > 0
    metrics = json.loads((run / "06-eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"reference", "sft", "dpo", "grpo"}
    assert set(metrics["controllability"]["grpo"]["sweeps"]) == {"brevity", "structure"}
    table = result.output
    for i, stage in enumerate(STAGES, start=1):
        assert f"0{i}-{stage}" in table
    assert "base (reference)" in table and "rho brevity" in table
    assert "targets (grpo against the base model):" in table
