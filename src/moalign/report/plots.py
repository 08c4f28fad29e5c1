"""The report's figures (matplotlib, Agg backend), each returned as an embeddable ``data:image/png`` URI.

Every function takes plain data read from a run directory (``metrics.json``, ``samples.jsonl``,
``metrics.jsonl``) and returns None when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_TRAINING_PANELS = 12


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig: Any) -> str:
    """The figure as a base64 PNG ``data:`` URI (the figure is closed)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def win_rate_bars(models: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Win rate of each candidate against the reference, with its bootstrap interval and the 50% line."""
    rows = [
        (label, m["win_rate"]) for label, m in models.items() if m.get("win_rate") and m["win_rate"]["rate"] is not None
    ]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.2))
    rates = [100 * w["rate"] for _, w in rows]
    lows = [100 * (w["rate"] - w["interval"][0]) if w.get("interval") else 0 for _, w in rows]
    highs = [100 * (w["interval"][1] - w["rate"]) if w.get("interval") else 0 for _, w in rows]
    ax.bar(range(len(rows)), rates, yerr=[lows, highs], capsize=6, color="#4c72b0")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=20, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("win rate vs reference (%)")
    return png_data_uri(fig)


def radar(axes_names: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str = "") -> str | None:
    """A radar chart with one polygon per series (a grouped bar chart when there are fewer than 3 axes)."""
    series = {k: [0.0 if v is None else float(v) for v in vals] for k, vals in series.items()}
    if not axes_names or not series:
        return None
    plt = _pyplot()
    if len(axes_names) < 3:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        width = 0.8 / len(series)
        for j, (name, vals) in enumerate(series.items()):
            ax.bar([i + j * width for i in range(len(axes_names))], vals, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(axes_names))], list(axes_names))
    else:
        angles = [2 * math.pi * i / len(axes_names) for i in range(len(axes_names))]
        fig, ax = plt.subplots(figsize=(4.6, 4.6), subplot_kw={"polar": True})
        for name, vals in series.items():
            ax.plot([*angles, angles[0]], [*vals, vals[0]], label=name)
            ax.fill([*angles, angles[0]], [*vals, vals[0]], alpha=0.1)
        ax.set_xticks(angles, list(axes_names))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return png_data_uri(fig)


def controllability_curves(result: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Measured level against requested intensity, one panel per dimension, one line per model (mean +- std)."""
    dims = list(dict.fromkeys(d for r in result.values() for d in r["sweeps"]))
    if not dims:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.2), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        for label, r in result.items():
            sweep = r["sweeps"].get(d)
            if not sweep:
                continue
            xs = [p["intensity"] for p in sweep["points"]]
            ys = [p["mean"] for p in sweep["points"]]
            errs = [p["std"] or 0 for p in sweep["points"]]
            rho = sweep["spearman"]
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                marker="o",
                capsize=4,
                label=f"{label} (rho={'n/a' if rho is None else f'{rho:.2f}'})",
            )
        xs = sorted({p["intensity"] for r in result.values() for p in r["sweeps"].get(d, {}).get("points", [])})
        if xs:
            ax.plot([xs[0], xs[-1]], [xs[0], xs[-1]], color="grey", linestyle="--", linewidth=1, label="requested")
            ax.set_ylim(min(xs[0], ax.get_ylim()[0]) - 0.5, max(xs[-1], ax.get_ylim()[1]) + 0.5)
        ax.set_title(d)
        ax.set_xlabel("requested intensity")
        ax.set_ylabel("measured level")
        ax.legend(fontsize=8)
    return png_data_uri(fig)


def length_histograms(lengths: Mapping[str, Sequence[int]]) -> str | None:
    """Overlaid histograms of response length in tokens, one per model."""
    lengths = {k: v for k, v in lengths.items() if v}
    if not lengths:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    top = max(max(v) for v in lengths.values())
    bins = list(range(0, top + max(1, top // 20) + 1, max(1, top // 20)))
    for label, values in lengths.items():
        ax.hist(values, bins=bins, alpha=0.5, label=label)
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("responses")
    ax.legend(fontsize=8)
    return png_data_uri(fig)


HELD_OUT_ENDINGS = ("eval/reward", "/mean", "accuracy", "loss")
"""The held-out metrics a learning curve shows: rewards (overall and per objective), accuracies and
losses; a trainer's other evaluation statistics (clip ratios, lengths, stds) stay in ``metrics.jsonl``."""


def training_series(
    records: Sequence[Mapping[str, Any]], held_out: bool = False
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{metric: {stage: [(step, value), ...]}}`` for numeric training metrics logged with a step; with
    ``held_out``, the periodic evaluations on held-out prompts (``eval/...`` ending in one of
    :data:`HELD_OUT_ENDINGS`) instead, the values one evaluation logged in several batches averaged
    (learning curves)."""
    values: dict[str, dict[str, dict[float, list[float]]]] = {}
    for r in records:
        step = r.get("step")
        if step is None:
            continue
        for key, value in r.items():
            if key in ("stage", "step", "time") or key.startswith("stage/") or key.startswith("eval/") != held_out:
                continue
            if held_out and not key.endswith(HELD_OUT_ENDINGS):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                continue
            values.setdefault(key, {}).setdefault(str(r.get("stage")), {}).setdefault(float(step), []).append(value)
    return {
        key: {stage: [(step, sum(v) / len(v)) for step, v in points.items()] for stage, points in stages.items()}
        for key, stages in values.items()
    }


def training_curves(records: Sequence[Mapping[str, Any]], held_out: bool = False) -> str | None:
    """One panel per training metric (rewards, then losses first, at most 12 panels), one line per stage; ``held_out``:
    the learning curves on held-out prompts (see :func:`training_series`)."""
    series = training_series(records, held_out)
    if not series:
        return None
    keys = sorted(series, key=lambda k: (not k.startswith("eval/reward"), not k.endswith("loss"), k))
    keys = keys[:MAX_TRAINING_PANELS]
    plt = _pyplot()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for stage, points in series[key].items():
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None, label=stage
            )
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    return png_data_uri(fig)


def pareto_fronts(
    objectives: Sequence[str], methods: Sequence[Mapping[str, Any]], reference: Sequence[float]
) -> str | None:
    """Each method's points and its front (a step line through the non-dominated points), one colour per
    method; one panel per pair of objectives (at most three pairs), the reference point marked."""
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))][:3]
    if not pairs or not any(m["points"] for m in methods):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        for k, m in enumerate(methods):
            colour = colours[k % len(colours)]
            pts = [(p["values"][i], p["values"][j], p["on_front"]) for p in m["points"]]
            ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], color=colour, alpha=0.35, s=18)
            front = sorted((x, y) for x, y, on in pts if on)
            if len(objectives) == 2 and front:  # the boundary of the dominated region, a staircase
                ax.step([x for x, _ in front], [y for _, y in front], where="pre", color=colour, linewidth=1)
            ax.scatter([x for x, _ in front], [y for _, y in front], color=colour, s=30, label=f"{m['name']}", zorder=3)
        ax.scatter([reference[i]], [reference[j]], color="grey", marker="x", label="reference")
        ax.set_xlabel(objectives[i])
        ax.set_ylabel(objectives[j])
        ax.legend(fontsize=8)
    return png_data_uri(fig)
