"""``moalign compare RUN...``: one table across runs in the papers' layout.

Columns (seed 000's results table and seed 004's table 1): method, average judge reward, difference to
the reference, win rate against the reference (wins / N, ties), BLEU-1/2/4 (seed 004 sec. 4.5), perplexity. One row per
candidate model of each run's latest evaluation, plus the first run's reference as the baseline row.
Runs judged with different judges or prompt sets are not comparable: the table says so beneath it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from moalign.errors import UserError
from moalign.report.page import STYLE, find_evaluations, fmt, results_rows

NUM = ' class="num"'
HEADER = (
    "Method",
    "Avg reward",
    "Diff to reference",
    "Win rate",
    "Wins / N",
    "BLEU-1",
    "BLEU-2",
    "BLEU-4",
    "Perplexity",
)


def compare_rows(runs: Sequence[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the comparison table and warnings (settings that differ between runs)."""
    rows: list[dict[str, Any]] = []
    settings: dict[str, str] = {}
    for i, run in enumerate(runs):
        root = Path(run)
        if not root.is_dir():
            raise UserError("run directory not found", source=str(root))
        evaluations = find_evaluations(root)
        if not evaluations:
            raise UserError(
                "no evaluation (metrics.json) in this run; run `moalign eval` or an eval stage", source=str(root)
            )
        ev = evaluations[-1]
        key = {k: ev.metrics[k] for k in ("dataset", "split", "num_prompts", "judge", "decoding")}
        settings[str(root)] = json.dumps(key, sort_keys=True)
        for r in results_rows(ev.metrics):
            is_reference = r["win_rate"] is None and ev.metrics["models"][r["model"]]["role"] == "reference"
            if is_reference and i > 0:
                continue
            name = root.resolve().name
            rows.append({**r, "method": f"{r['model']} (reference)" if is_reference else f"{name}/{r['model']}"})
    warnings = []
    if len(set(settings.values())) > 1:
        warnings.append("runs differ in dataset, judge or decoding settings; their numbers are not comparable")
    return rows, warnings


def _cells(r: dict[str, Any]) -> list[str]:
    wins = "–" if r["n"] is None else f"{r['wins']}/{r['n']} ({r['ties']} ties)"
    return [
        r["method"],
        fmt(r["avg_reward"]),
        fmt(r["reward_diff"]),
        fmt(r["win_rate"], 2, 100, "%"),
        wins,
        fmt(r["bleu1"], 2),
        fmt(r["bleu2"], 2),
        fmt(r["bleu4"], 2),
        fmt(r["perplexity"], 2),
    ]


def markdown_table(rows: Sequence[dict[str, Any]], warnings: Sequence[str] = ()) -> str:
    """The comparison as a GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    lines += [f"\n> warning: {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def html_table(rows: Sequence[dict[str, Any]], warnings: Sequence[str] = ()) -> str:
    """The comparison as a self-contained HTML page."""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td{NUM if i else ''}>{escape(c)}</td>" for i, c in enumerate(_cells(r))) + "</tr>"
        for r in rows
    )
    notes = "".join(f'<p class="note">warning: {escape(w)}</p>' for w in warnings)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>moalign comparison</title>'
        f"<style>{STYLE}</style></head><body><h1>Comparison</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}</body></html>\n"
    )
