"""The Pareto view across methods: points from run directories, fronts, hypervolumes and costs (``pareto.json``).

Each source directory is one *method*, each of its evaluated policies one *point* (its per-objective mean
scores): a sweep root (MORLHF) gives each ``wN/`` run's candidate, an evaluation or run directory every
candidate of its latest evaluation, plus one ``NAME:LABEL tags`` method from its controllability pairs
(seed 002 figure 6). A method's cost (seed 002 table 8) is what the runs that produced it took to train.

Reading notes: docs/papers.md#reportfrontspy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_write_json
from moalign.cost import find_run_root, total_cost, training_stages
from moalign.errors import UserError
from moalign.eval.pareto import hypervolume, pareto_mask
from moalign.run_dir import SWEEP_FILE

PARETO_FILE = "pareto.json"
PARETO_KIND = "moalign-pareto"


@dataclass
class Method:
    """One method's points (``{label: {objective: mean}}``), where they came from, and its cost."""

    name: str
    source: str
    points: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[Path] = field(default_factory=list)
    """Run directories whose training stages produced the points."""
    extra_cost: list[dict[str, Any]] = field(default_factory=list)
    """Cost records outside those runs (a soup's own time)."""


def _latest_evaluation(root: Path) -> Any | None:
    from moalign.report.page import find_evaluations

    evaluations = find_evaluations(root)
    return evaluations[-1] if evaluations else None


def _candidates(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {label: m for label, m in metrics["models"].items() if m.get("role") != "reference"}


def _producing_runs(spec: str, method: Method) -> None:
    """Add the run(s) that trained model ``spec`` to ``method`` (a soup: its ingredients' runs and its own time)."""
    from moalign.models.soup import SOUP_FILE

    path = Path(spec)
    soup = path / SOUP_FILE
    if soup.is_file():
        record = json.loads(soup.read_text())
        method.extra_cost.append({k: record.get(k) for k in ("wall_time_s", "cpu_time_s")})
        for ingredient in record["models"]:
            _producing_runs(ingredient, method)
        return
    root = find_run_root(path) if path.exists() else None
    if root is not None and root not in method.runs:
        method.runs.append(root)


def collect_methods(source: str | Path) -> list[Method]:
    """The methods one source directory holds: a sweep root's runs as one method, else the candidates of its
    latest evaluation as one plus a ``NAME:LABEL tags`` method per candidate with controllability pairs; none
    if it has no evaluation."""
    root = Path(source)
    if not root.is_dir():
        raise UserError("directory not found", source=str(root))
    name = root.resolve().name
    if (root / SWEEP_FILE).is_file():
        method = Method(name=name, source=str(root))
        for point in json.loads((root / SWEEP_FILE).read_text())["points"]:
            sub = root / point["run"]
            method.runs.append(sub.resolve())
            ev = _latest_evaluation(sub) if sub.is_dir() else None
            candidates = _candidates(ev.metrics) if ev is not None else {}
            for label, m in candidates.items():
                key = point["run"] if len(candidates) == 1 else f"{point['run']}/{label}"
                method.points[key] = m["objectives"]
        return [method] if method.points else []
    ev = _latest_evaluation(root)
    if ev is None:
        return []
    method = Method(name=name, source=str(root))
    tagged: list[Method] = []
    for label, m in _candidates(ev.metrics).items():
        method.points[label] = m["objectives"]
        own = Method(name=label, source=str(m["spec"]))
        _producing_runs(str(m["spec"]), own)
        method.runs += [r for r in own.runs if r not in method.runs]
        method.extra_cost += own.extra_cost
        control = (ev.metrics.get("controllability") or {}).get(label)
        if control and control.get("pairs"):
            tags = Method(name=f"{name}:{label} tags", source=str(root), runs=own.runs, extra_cost=own.extra_cost)
            for pair in control["pairs"]:
                for combo in pair["combinations"]:
                    key = " ".join(f"<{d} {v}>" for d, v in combo["tags"].items())
                    tags.points[key] = combo["scores"]
            tagged.append(tags)
    return [method, *tagged]


def method_cost(method: Method) -> dict[str, Any]:
    """Summed training cost of the method's runs (evaluation excluded), and how many policies they trained."""
    records = [r for run in method.runs for r in training_stages(run)] + method.extra_cost
    return {"policies_trained": len(method.runs), **total_cost(records)}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fronts(
    methods: Sequence[Method], objectives: Sequence[str] | None = None, reference: Sequence[float] | None = None
) -> dict[str, Any]:
    """The ``pareto.json`` content: per method its points (on the front or not), hypervolume and cost.

    ``objectives`` default to the first point's objectives that every method scored (points without a
    score for one are left out, with a warning); ``reference`` defaults
    to the per-objective minimum over all points (so a method's hypervolume is comparable with the
    others' of the same call, not across calls).
    """
    if not methods:
        raise UserError("no evaluated points: evaluate the runs first (an eval stage or moalign eval)")
    names = list(objectives or [])
    if not names:
        first = next(iter(methods[0].points.values()))
        names = [n for n in first if all(any(_finite(p.get(n)) for p in m.points.values()) for m in methods)]
    if not names:
        raise UserError("the methods share no objective; name the axes with --objectives")
    warnings: list[str] = []
    rows: list[tuple[Method, list[tuple[str, list[float]]]]] = []
    for m in methods:
        points = []
        for label, values in m.points.items():
            if all(_finite(values.get(n)) for n in names):
                points.append((label, [float(values[n]) for n in names]))
            else:
                warnings.append(f"{m.name}/{label}: no score for every objective of {names}; left out")
        rows.append((m, points))
    every = [v for _, points in rows for _, v in points]
    if not every:
        raise UserError(f"no point has a score for every objective of {names}")
    if reference is None:
        ref = [min(v[k] for v in every) for k in range(len(names))]
        ref_source = "minimum over all points"
    else:
        if len(reference) != len(names):
            raise UserError(f"--reference has {len(reference)} values for {len(names)} objectives {names}")
        ref, ref_source = [float(x) for x in reference], "given"
    out_methods = []
    for m, points in rows:
        mask = pareto_mask([v for _, v in points])
        out_methods.append(
            {
                "name": m.name,
                "source": m.source,
                "points": [
                    {"label": label, "values": v, "on_front": keep}
                    for (label, v), keep in zip(points, mask, strict=True)
                ],
                "hypervolume": round(hypervolume([v for _, v in points], ref), 6),
                "cost": method_cost(m),
            }
        )
    return {
        "kind": PARETO_KIND,
        "objectives": names,
        "reference": ref,
        "reference_source": ref_source,
        "methods": out_methods,
        "warnings": warnings,
    }


def write_fronts(
    sources: Sequence[str | Path],
    output: str | Path,
    *,
    objectives: Sequence[str] | None = None,
    reference: Sequence[float] | None = None,
    missing_ok: bool = False,
) -> dict[str, Any] | None:
    """Collect the methods of ``sources``, compute their fronts and write ``OUTPUT/pareto.json``.

    With ``missing_ok`` a call whose sources hold no evaluated point writes nothing and returns None.
    """
    methods = [m for s in sources for m in collect_methods(s)]
    if not methods and missing_ok:
        return None
    result = fronts(methods, objectives, reference)
    atomic_write_json(Path(output) / PARETO_FILE, result)
    return result
