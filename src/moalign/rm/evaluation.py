"""Evaluation of a multi-head reward model: what seed 002's table 1 reports, and pairwise accuracy.

Per head: intensity accuracy (the most probable class is the label), preference accuracy, Spearman of the
expected intensity against the label, the confusion matrix; on (prompt, chosen, rejected) sets, pairwise
accuracy (ties count half), per head and for a weighted combination of the heads.
Reading taken (seed 002 does not define preference accuracy): the expected intensity falls on the label's
side of the scale's middle ``(n + 1) / 2``; labels at the middle are left out, an expectation there is wrong.

Reading notes: docs/papers.md#rmevaluationpy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from moalign.atomic import atomic_write_json
from moalign.correlation import spearman
from moalign.errors import UserError

if TYPE_CHECKING:
    from moalign.rm.data import PairExample, RatedExample
    from moalign.rm.model import MultiHeadRewardModel


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """``[N]`` predicted and true intensities in ``1..classes`` -> ``[classes, classes]`` counts (rows: true)."""
    flat = (labels.long() - 1) * classes + (predicted.long() - 1)
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def unrecognised_levels(confusion: list[list[int]], min_support: int = 5) -> list[int]:
    """Intensities (1-based) with at least ``min_support`` held-out samples whose recall (the share the head
    predicts as that level, read off the ``[K, K]`` confusion matrix, rows true) is below chance ``1/K``:
    levels a policy cannot be steered to by this head's target probability."""
    classes = len(confusion)
    return [
        level
        for level, row in enumerate(confusion, start=1)
        if sum(row) >= min_support and row[level - 1] / sum(row) < 1 / classes
    ]


def intensity_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of exact class matches over ``[N]`` intensities; NaN for an empty set."""
    return (predicted.long() == labels.long()).float().mean().item() if labels.numel() else float("nan")


def preference_accuracy(expected: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[float, int]:
    """(accuracy, support): ``sign(expected - mid) == sign(label - mid)`` over labels off the middle.

    ``expected`` is ``[N]`` expected intensities, ``labels`` ``[N]`` true intensities, ``mid = (classes + 1) / 2``.
    """
    mid = (classes + 1) / 2
    label_side = torch.sign(labels.double() - mid)
    keep = label_side != 0
    support = int(keep.sum())
    if support == 0:
        return float("nan"), 0
    correct = torch.sign(expected.double() - mid)[keep] == label_side[keep]
    return correct.double().mean().item(), support


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs with ``chosen > rejected`` over ``[N]`` scores; a tie counts 1/2."""
    if chosen.numel() == 0:
        return float("nan")
    return ((chosen > rejected).double() + 0.5 * (chosen == rejected).double()).mean().item()


def combined_score(
    expected: dict[str, torch.Tensor], dimensions: dict[str, int], weights: dict[str, float] | None = None
) -> torch.Tensor:
    """``[B]`` weighted mean over heads of ``(E_d - 1) / (n_d - 1)`` (each head's expected intensity in [0, 1]).

    ``weights`` default to 1 for every head; heads missing from ``weights`` get 0.
    """
    weights = weights if weights is not None else dict.fromkeys(dimensions, 1.0)
    unknown = sorted(set(weights) - set(dimensions))
    if unknown:
        raise UserError(f"weights: unknown dimension(s) {', '.join(unknown)}; known: {', '.join(dimensions)}")
    total = sum(weights.values())
    if total <= 0:
        raise UserError("weights: need a positive total weight")
    first = next(iter(expected.values()))
    out = torch.zeros_like(first, dtype=torch.float64)
    for dim, w in weights.items():
        out += w * (expected[dim].double() - 1) / (dimensions[dim] - 1)
    return out / total


def head_metrics(
    probs: dict[str, torch.Tensor], labels: dict[str, list[int | None]], dimensions: dict[str, int]
) -> dict[str, Any]:
    """Per-head intensity/preference accuracy and confusion matrix over the labelled samples, plus means.

    ``probs``: dimension -> ``[N, n]``; ``labels``: dimension -> N intensities or None (unlabelled).
    """
    heads: dict[str, Any] = {}
    for dim, n in dimensions.items():
        keep = [i for i, y in enumerate(labels[dim]) if y is not None]
        y = torch.tensor([labels[dim][i] for i in keep], dtype=torch.long)
        p = probs[dim][keep] if keep else torch.empty(0, n)
        predicted = p.argmax(-1) + 1
        levels = torch.arange(1, n + 1, dtype=p.dtype)
        expected = p @ levels
        pref, pref_support = preference_accuracy(expected, y, n)
        rho = spearman(expected.tolist(), y.double().tolist()) if len(keep) > 1 else math.nan
        heads[dim] = {
            "classes": n,
            "support": len(keep),
            "intensity_accuracy": intensity_accuracy(predicted, y),
            "preference_accuracy": pref,
            "preference_support": pref_support,
            "chance_intensity_accuracy": 1.0 / n,
            "spearman": None if math.isnan(rho) else rho,
            "confusion_matrix": confusion_matrix(predicted, y, n).tolist() if keep else [[0] * n for _ in range(n)],
        }
    scored = [h for h in heads.values() if h["support"]]
    mean = {
        key: sum(h[key] for h in scored if h[key] == h[key]) / max(1, sum(1 for h in scored if h[key] == h[key]))
        for key in ("intensity_accuracy", "preference_accuracy")
    }
    return {"heads": heads, "mean": mean}


def evaluate_rated(model: MultiHeadRewardModel, examples: list[RatedExample], batch_size: int = 32) -> dict[str, Any]:
    """Score rated examples and compute :func:`head_metrics`."""
    scores = model.score([e.prompt for e in examples], [e.response for e in examples], batch_size=batch_size)
    labels = {d: [e.labels.get(d) for e in examples] for d in model.dimensions}
    return {"samples": len(examples), **head_metrics(scores.probs, labels, model.dimensions)}


def evaluate_pairs(
    model: MultiHeadRewardModel,
    pairs: list[PairExample],
    batch_size: int = 32,
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Pairwise accuracy per head and for the weighted combination (one scoring pass over 2N pairs)."""
    prompts = [p.prompt for p in pairs]
    scores = model.score(prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], batch_size=batch_size)
    n = len(pairs)
    per_head = {d: pairwise_accuracy(e[:n], e[n:]) for d, e in scores.expected.items()}
    combined = combined_score(scores.expected, model.dimensions, weights)
    return {
        "pairs": n,
        "weights": weights if weights is not None else dict.fromkeys(model.dimensions, 1.0),
        "pairwise_accuracy": {"combined": pairwise_accuracy(combined[:n], combined[n:]), **per_head},
    }


def plot_report(metrics: dict[str, Any], path: str | Path) -> Path:
    """Confusion matrices per head (and pairwise accuracies, if present) as one PNG (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heads = metrics.get("heads", {})
    pairwise = metrics.get("pairwise_accuracy")
    panels = len(heads) + (1 if pairwise else 0)
    fig = Figure(figsize=(3.6 * max(1, panels), 3.4))
    FigureCanvasAgg(fig)
    for i, (dim, h) in enumerate(heads.items()):
        ax = fig.add_subplot(1, panels, i + 1)
        cm = h["confusion_matrix"]
        ax.imshow(cm, cmap="Blues")
        for r, row in enumerate(cm):
            for c, count in enumerate(row):
                ax.text(c, r, str(count), ha="center", va="center", fontsize=8)
        ticks = list(range(h["classes"]))
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
        ax.set_xlabel("predicted intensity")
        ax.set_ylabel("true intensity")
        ax.set_title(f"{dim}: acc {h['intensity_accuracy']:.2f}, pref {h['preference_accuracy']:.2f}", fontsize=9)
    if pairwise:
        ax = fig.add_subplot(1, panels, panels)
        names = list(pairwise)
        ax.bar(names, [pairwise[k] for k in names], color="tab:green")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1)
        ax.set_title("pairwise accuracy", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def _finite(obj: Any) -> Any:
    """NaN (a metric over no samples) -> None, so the JSON stays standard."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_report(metrics: dict[str, Any], out_dir: str | Path, name: str = "rm_eval") -> tuple[Path, Path]:
    """``NAME.json`` and ``NAME.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = out_dir / f"{name}.json"
    atomic_write_json(json_path, _finite(metrics))
    return json_path, plot_report(metrics, out_dir / f"{name}.png")
