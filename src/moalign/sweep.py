"""MORLHF (seed 002 eq. 1): one policy per objective-weight vector, each trained with the weighted sum.

A recipe with a ``sweep:`` key (e.g. ``sweep: {weights: [[1, 0], [0.5, 0.5], [0, 1]]}``) runs its stages once
per vector into ``w0/``, ``w1/`` ... (each a complete run directory); vector ``i`` sets the objectives' weights
in the order they are listed. The sweep root holds ``sweep.json`` and, once the runs have evaluations,
``pareto.json`` and ``report.html``. One-hot vectors train the single-objective policies that Rewarded Soups
(``moalign soup``) interpolates.

Notes: docs/papers.md#sweeppy (an example sweep recipe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moalign.atomic import atomic_write_json
from moalign.recipe import Recipe
from moalign.run_dir import SWEEP_FILE, RunDir

SWEEP_KIND = "moalign-sweep"


def point_name(index: int) -> str:
    """The sub-directory of the sweep's ``index``-th weight vector."""
    return f"w{index}"


def weighted_recipe(recipe: Recipe, index: int, weights: list[float]) -> Recipe:
    """The recipe of one sweep point: the objectives re-weighted, named ``w<index>``, without the sweep."""
    objectives = [o.model_copy(update={"weight": w}) for o, w in zip(recipe.objectives, weights, strict=True)]
    return recipe.model_copy(update={"name": point_name(index), "sweep": None, "objectives": objectives})


def run_sweep(run: RunDir, recipe: Recipe, run_point: Callable[[Recipe], RunDir]) -> RunDir:
    """Run every sweep point with ``run_point`` (the pipeline, into ``run``, which the caller has locked; it
    keeps finished points on a resume), then write ``sweep.json``, the Pareto front and the report where the
    points were evaluated."""
    from moalign.report.fronts import write_fronts
    from moalign.report.page import build_report

    assert recipe.sweep is not None
    names = [o.name for o in recipe.objectives]
    t0 = time.time()
    points: list[dict[str, Any]] = []
    for i, vector in enumerate(recipe.sweep.weights):
        sub = run_point(weighted_recipe(recipe, i, vector))
        points.append({"run": sub.root.name, "weights": dict(zip(names, vector, strict=True))})
    atomic_write_json(
        run.root / SWEEP_FILE, {"kind": SWEEP_KIND, "name": recipe.name, "objectives": names, "points": points}
    )
    run.write_summary({"name": recipe.name, "sweep": points, "wall_time_s": round(time.time() - t0, 3)})
    if write_fronts([run.root], run.root, missing_ok=True) is not None:
        build_report(run.root)
    return run
