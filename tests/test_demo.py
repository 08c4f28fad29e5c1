"""The main job end to end: ``moalign demo --fast`` on the real SmolLM2, offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moalign.cli import app
from moalign.models import load_tokenizer

STAGES = ["chat_template", "best_of_n", "sft", "dpo", "reward_model", "grpo", "eval"]


@pytest.mark.integration
def test_demo_fast_runs_every_stage_and_prints_the_table(tmp_path, smollm2_dir):
    result = CliRunner().invoke(app, ["demo", "--fast", "--set", f"output_dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "demo"
    summary = json.loads((run / "summary.json").read_text())
    assert [s["type"] for s in summary["stages"]] == STAGES
    assert (run / "report.html").stat().st_size > 0
    metrics = json.loads((run / "07-eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"reference", "grpo"}
    assert metrics["models"]["reference"]["spec"].endswith("01-chat_template/model")
    assert set(metrics["controllability"]["grpo"]["sweeps"]) == {"brevity", "structure"}
    # the policy saw every tag through its chat template: the saved model renders them the same way
    chat = [{"role": "user", "content": "<brevity 5> Explain tides."}]
    rendered = load_tokenizer(str(run / "06-grpo" / "model")).apply_chat_template(chat, tokenize=False)
    assert "Explain tides. Answer in one short sentence" in rendered and "<brevity 5>" not in rendered
    table = result.output
    for i, stage in enumerate(STAGES, start=1):
        assert f"0{i}-{stage}" in table
    assert "base (reference)" in table and "rho brevity" in table
    assert "targets (grpo against the base model):" in table
