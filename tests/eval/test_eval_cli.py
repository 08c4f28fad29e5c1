"""``moalign eval`` on the command line."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from moalign.cli import app

SMOLLM2 = "builtin:smollm2-135m-instruct"


def test_eval_needs_a_candidate(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--output", str(tmp_path)])
    assert result.exit_code != 0 and "at least one candidate" in str(result.exception)


def test_eval_rejects_an_unknown_preset(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--models", "x", "--decoding", "nucleus", "--output", str(tmp_path)])
    assert result.exit_code != 0 and "decoding" in str(result.exception)


def test_eval_stage_has_no_generic_stage_command():
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "--models" in result.output and "--set" not in result.output


@pytest.mark.integration
def test_moalign_eval_smollm2_against_itself(tmp_path):
    out = tmp_path / "eval"
    args = ["--models", SMOLLM2, "--reference", SMOLLM2, "--dataset", "builtin:ifeval-lite", "--split", "test"]
    args += ["--num-samples", "4", "--max-new-tokens", "24", "--judge", "verifier", "--no-cache", "--output", str(out)]
    result = subprocess.run([sys.executable, "-m", "moalign", "eval", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    candidate = metrics["models"]["smollm2-135m-instruct"]
    assert metrics["num_prompts"] == 4 and metrics["split"] == "test"
    assert candidate["win_rate"]["n"] == 4 and candidate["win_rate"]["rate"] == 0.5  # itself: all ties
    assert candidate["reward_diff"] == 0.0 and 0.0 <= candidate["reward"]["mean"] <= 1.0
    assert candidate["length"]["tokens"]["max"] <= 24
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and all(s["responses"]["reference"].strip() for s in samples)
    assert "Win rate [95% CI]" in (out / "report.html").read_text()
