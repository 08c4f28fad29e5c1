"""The reward models of a run side by side: seed 002 figure 4 (accuracy across DataType 1-4) as a table.

One row per ``reward_model`` stage of the run: its label binning (a DataType preset or the bins it was
given), the validation set's size and, per head, the intensity accuracy (with chance, ``1 / classes``,
beside it) and the preference accuracy of its best validation step (:mod:`moalign.rm.evaluation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from moalign.errors import UserError
from moalign.run_dir import RunDir


def reward_model_rows(run_root: str | Path) -> list[dict[str, Any]]:
    """``{stage, dimensions, validation_samples, heads, mean}`` per finished ``reward_model`` stage."""
    run = RunDir.existing(run_root)
    stages = yaml.safe_load(run.config_path.read_text(encoding="utf-8")).get("stages") or []
    rows = []
    for record_path in sorted(run.root.glob("[0-9][0-9]-reward_model/stage.json")):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        index = int(record_path.parent.name[:2])
        config = (stages[index - 1] or {}).get("reward_model", {}) if index <= len(stages) else {}
        validation = record["summary"].get("validation") or {}
        report = record_path.parent / "rm_eval.json"  # the best validation step's per-head metrics (write_report)
        heads = json.loads(report.read_text(encoding="utf-8"))["heads"] if report.is_file() else {}
        rows.append(
            {
                "stage": record["stage"],
                "dimensions": config.get("dimensions", "-"),
                "validation_samples": record["summary"].get("validation_samples"),
                "heads": heads,
                "mean": {k: validation.get(k) for k in ("intensity_accuracy", "preference_accuracy")},
            }
        )
    if not rows:
        raise UserError("no finished reward_model stage in this run", source=str(run.root))
    return rows


def _pct(value: Any) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table: per head ``intensity accuracy (chance) / preference accuracy`` in %."""
    heads = list(dict.fromkeys(d for r in rows for d in r["heads"]))
    header = ["stage", "dimensions", "validation", *heads, "mean intensity", "mean preference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for r in rows:
        cells = [r["stage"], str(r["dimensions"]), str(r["validation_samples"] or "-")]
        for d in heads:
            h = r["heads"].get(d)
            cells.append(
                "-"
                if h is None
                else f"{_pct(h['intensity_accuracy'])} ({_pct(h['chance_intensity_accuracy'])}) / "
                f"{_pct(h['preference_accuracy'])}"
            )
        cells += [_pct(r["mean"]["intensity_accuracy"]), _pct(r["mean"]["preference_accuracy"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = "\nPer head: intensity accuracy (chance) / preference accuracy, in %, at the best validation step.\n"
    return "\n".join(lines) + "\n" + note
