"""The end-of-run summary table (what ``moalign demo`` prints) and the demo's target checks.

One row per stage: its wall time and, for every model the run's last ``eval`` stage evaluated, the
win rate against the reference (base) model, each judge objective's mean, the mean response length,
the repeated-trigram share and the controllability Spearman correlation of each swept dimension.
Everything is read from the run directory (``summary.json`` and the eval stage's ``metrics.json``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONSTRAINT_OBJECTIVES = ("constraints", "verifier")
"""Judge objectives that measure constraint satisfaction (by name)."""

SPEARMAN_TARGET = 0.8
CONSTRAINT_GAIN = 0.10
"""Constraint satisfaction a trained model should add to the base model's (absolute)."""
LENGTH_BOUNDS = (0.5, 2.0)
"""Sane mean length of a trained model: this range times the base model's mean length."""
REPETITION_MARGIN = 0.05
"""Sane repeated-trigram share: at most the base model's plus this margin."""


def latest_eval_metrics(run_root: str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of the run's last ``eval`` stage, or None."""
    found = sorted(Path(run_root).glob("[0-9][0-9]-eval/metrics.json"))
    return json.loads(found[-1].read_text()) if found else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(run_root: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table: per stage its wall time and, per model of the last ``eval``
    stage, win rate, objective means, mean length, repeated-trigram share and controllability."""
    root = Path(run_root)
    summary = json.loads((root / "summary.json").read_text())
    metrics = latest_eval_metrics(root) or {"models": {}, "objectives": []}
    models: Mapping[str, Any] = metrics["models"]
    control = metrics.get("controllability") or {}
    dims = sorted({d for result in control.values() for d in result.get("sweeps", {})})
    objectives = list(metrics.get("objectives", []))
    header = ["stage", "wall s", "win rate", *objectives, "tokens", "repetition", *(f"rho {d}" for d in dims)]

    def model_cells(label: str) -> list[str]:
        m = models.get(label)
        if m is None:
            return ["-"] * (len(header) - 2)
        sweeps = (control.get(label) or {}).get("sweeps", {})
        return [
            _fmt((m.get("win_rate") or {}).get("rate")),
            *(_fmt(m["objectives"].get(o)) for o in objectives),
            _fmt(m["length"]["tokens"]["mean"], 1),
            _fmt(m.get("repetition")),
            *(_fmt((sweeps.get(d) or {}).get("spearman")) for d in dims),
        ]

    rows = []
    if "reference" in models:
        rows.append(["base (reference)", "-", *model_cells("reference")])
    for stage in summary["stages"]:
        rows.append([stage["stage"], _fmt(stage["wall_time_s"], 0), *model_cells(stage["type"])])
    rows.append(["total", _fmt(summary["wall_time_s"], 0), *["" for _ in header[2:]]])
    return header, rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def contribution_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per-stage contribution (the ablation table): each evaluated model in chain order (the reference
    first), its constraint satisfaction and controllability Spearman per swept dimension, each followed
    by its change from the model before it (the stage's contribution along the chain)."""
    models: Mapping[str, Any] = metrics["models"]
    control = metrics.get("controllability") or {}
    constraint = next((n for n in CONSTRAINT_OBJECTIVES if n in metrics.get("objectives", [])), None)
    dims = sorted({d for result in control.values() for d in result.get("sweeps", {})})
    columns: list[tuple[str, Any]] = []
    if constraint is not None:
        columns.append(("constraint satisfaction", lambda label: models[label]["objectives"].get(constraint)))
    for d in dims:
        columns.append(
            (f"rho {d}", lambda label, d=d: ((control.get(label) or {}).get("sweeps", {}).get(d) or {}).get("spearman"))
        )
    header = ["model"] + [h for name, _ in columns for h in (name, "change")]
    rows, previous = [], None
    for label in models:
        row = [label]
        for _, value in columns:
            now = value(label)
            before = None if previous is None else value(previous)
            change = None if now is None or before is None else now - before
            row += [_fmt(now), "" if previous is None else (_fmt(change) if change is None else f"{change:+.3f}")]
        rows.append(row)
        previous = label
    return header, rows


def target_checks(metrics: Mapping[str, Any], label: str) -> list[tuple[str, bool | None, str]]:
    """The demo's targets for model ``label`` against the reference: ``(target, met, detail)`` each.

    Constraint satisfaction at least :data:`CONSTRAINT_GAIN` above the base model's, with the bootstrap
    interval of the per-prompt difference above 0 where the judge is the constraint objective alone;
    Spearman >= 0.8 and a mean measured level that rises with the requested one, for each swept
    dimension; no more cut-off responses than the base model; mean length within
    :data:`LENGTH_BOUNDS` of the base model's and repeated-trigram share at most the base model's plus
    :data:`REPETITION_MARGIN` (the reading taken of "within sane bounds").
    """
    models = metrics["models"]
    model, base = models[label], models["reference"]
    checks: list[tuple[str, bool | None, str]] = []
    for name in CONSTRAINT_OBJECTIVES:
        if name in model["objectives"]:
            got, ref = model["objectives"][name], base["objectives"][name]
            met = None if got is None or ref is None else got >= ref + CONSTRAINT_GAIN
            detail = f"{_fmt(got)} vs base {_fmt(ref)}"
            interval = model.get("reward_diff_interval") if metrics.get("objectives") == [name] else None
            if interval is not None:
                met = bool(met) and interval[0] > 0
                detail += f", difference 95% interval [{_fmt(interval[0])}, {_fmt(interval[1])}]"
            checks.append((f"constraint satisfaction at least base + {CONSTRAINT_GAIN:.2f}", met, detail))
            break
    sweeps = ((metrics.get("controllability") or {}).get(label) or {}).get("sweeps", {})
    for dim, sweep in sorted(sweeps.items()):
        rho = sweep.get("spearman")
        met = None if rho is None else rho >= SPEARMAN_TARGET
        checks.append((f"controllability {dim}: Spearman >= {SPEARMAN_TARGET}", met, _fmt(rho)))
        means = [p["mean"] for p in sweep.get("points", [])]
        if len(means) > 1:
            rising = all(b > a for a, b in itertools.pairwise(means))
            shown = " ".join(_fmt(m, 2) for m in means)
            checks.append((f"controllability {dim}: mean level rises with the requested one", rising, shown))
    cut, cut_ref = model.get("truncated"), base.get("truncated")
    if cut is not None and cut_ref is not None:
        checks.append(("fewer cut-off responses than base", cut < cut_ref, f"{cut} vs base {cut_ref}"))
    got, ref = model["length"]["tokens"]["mean"], base["length"]["tokens"]["mean"]
    if got is not None and ref:
        low, high = LENGTH_BOUNDS
        checks.append(
            (f"mean length within {low}-{high}x base", low * ref <= got <= high * ref, f"{got:.1f} vs {ref:.1f} tokens")
        )
    rep, rep_ref = model.get("repetition"), base.get("repetition")
    if rep is not None and rep_ref is not None:
        checks.append(
            (
                f"repetition at most base + {REPETITION_MARGIN}",
                rep <= rep_ref + REPETITION_MARGIN,
                f"{rep:.3f} vs {rep_ref:.3f}",
            )
        )
    return checks


def summary_table(run_root: str | Path) -> str:
    """The printed summary: the table, then the target checks of the last evaluated model."""
    header, rows = summary_rows(run_root)
    text = format_table(header, rows)
    metrics = latest_eval_metrics(run_root)
    candidates = [k for k in (metrics or {}).get("models", {}) if k != "reference"]
    if metrics and candidates:
        label = candidates[-1]
        lines = [f"targets ({label} against the base model):"]
        for target, met, detail in target_checks(metrics, label):
            verdict = "n/a" if met is None else ("met" if met else "MISSED")
            lines.append(f"  [{verdict}] {target}: {detail}")
        text += "\n\n" + "\n".join(lines)
        if len(candidates) > 1:
            text += "\n\nper-stage contribution (change from the model before it):\n"
            text += format_table(*contribution_rows(metrics))
    return text
