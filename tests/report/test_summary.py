"""The end-of-run summary table and the demo's target checks, on a hand-written run directory."""

from __future__ import annotations

import json

from moalign.report.summary import contribution_rows, format_table, summary_rows, summary_table, target_checks


def model(constraints, tokens, repetition, win=None, diff=None, truncated=5):
    return {
        "objectives": {"verifier": constraints},
        "length": {"tokens": {"mean": tokens}},
        "repetition": repetition,
        "truncated": truncated,
        "win_rate": None if win is None else {"rate": win},
        "reward_diff_interval": diff,
    }


METRICS = {
    "objectives": ["verifier"],
    "models": {
        "reference": model(0.30, 80.0, 0.05),
        "sft": model(0.40, 70.0, 0.06, win=0.6, diff=[0.02, 0.18], truncated=2),
        "rwr": model(0.45, 200.0, 0.30, win=0.7, diff=[-0.01, 0.31], truncated=9),
    },
    "controllability": {
        "reference": {"sweeps": {"brevity": {"spearman": 0.1}}},
        "sft": {"sweeps": {"brevity": {"spearman": 0.85, "points": [{"mean": 1.5}, {"mean": 2.0}, {"mean": 4.0}]}}},
        "rwr": {"sweeps": {"brevity": {"spearman": 0.5, "points": [{"mean": 2.0}, {"mean": 1.5}]}}},
    },
}


def make_run(tmp_path):
    (tmp_path / "03-eval").mkdir()
    (tmp_path / "03-eval" / "metrics.json").write_text(json.dumps(METRICS))
    stages = [
        {"stage": "01-sft", "type": "sft", "wall_time_s": 12.4},
        {"stage": "02-rwr", "type": "rwr", "wall_time_s": 30.0},
        {"stage": "03-eval", "type": "eval", "wall_time_s": 5.0},
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"wall_time_s": 47.4, "stages": stages}))
    return tmp_path


def test_rows_per_stage_with_eval_numbers(tmp_path):
    header, rows = summary_rows(make_run(tmp_path))
    assert header == ["stage", "wall s", "win rate", "verifier", "tokens", "repetition", "rho brevity"]
    assert rows[0] == ["base (reference)", "-", "-", "0.300", "80.0", "0.050", "0.100"]
    assert rows[1] == ["01-sft", "12", "0.600", "0.400", "70.0", "0.060", "0.850"]
    assert rows[3][:3] == ["03-eval", "5", "-"]  # a stage without an evaluated model
    assert rows[-1][:2] == ["total", "47"]


def test_targets_report_misses_plainly():
    checks = {name: met for name, met, _ in target_checks(METRICS, "rwr")}
    assert checks["constraint satisfaction at least base + 0.10"] is False  # +0.15, but the interval holds 0
    assert checks["controllability brevity: Spearman >= 0.8"] is False  # 0.5 < 0.8
    assert checks["controllability brevity: mean level rises with the requested one"] is False  # 2.0 -> 1.5
    assert checks["fewer cut-off responses than base"] is False  # 9 > 5
    assert checks["mean length within 0.5-2.0x base"] is False  # 200 > 160
    assert checks["repetition at most base + 0.05"] is False  # 0.30 > 0.10
    assert all(met for _, met, _ in target_checks(METRICS, "sft"))  # +0.10 with the interval above 0


def test_printed_summary_names_the_last_model_and_missed_targets(tmp_path):
    text = summary_table(make_run(tmp_path))
    assert "targets (rwr against the base model)" in text
    assert "[MISSED] controllability brevity: Spearman >= 0.8: 0.500" in text
    assert "[MISSED] constraint satisfaction at least base + 0.10: 0.450 vs base 0.300, difference 95%" in text


def test_format_table_aligns_columns():
    assert format_table(["a", "bb"], [["xyz", "1"]]).splitlines() == ["a    bb", "---  --", "xyz   1"]


def test_contribution_rows_give_each_stage_its_change_from_the_model_before_it(tmp_path):
    header, rows = contribution_rows(METRICS)
    assert header == ["model", "constraint satisfaction", "change", "rho brevity", "change"]
    assert rows[0] == ["reference", "0.300", "", "0.100", ""]
    assert rows[1] == ["sft", "0.400", "+0.100", "0.850", "+0.750"]
    assert rows[2] == ["rwr", "0.450", "+0.050", "0.500", "-0.350"]
    assert "per-stage contribution" in summary_table(make_run(tmp_path))
