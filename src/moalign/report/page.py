"""``report.html``: one self-contained page built from a run directory alone.

Sources, all optional: every evaluation's ``metrics.json`` + ``samples.jsonl`` (at the run root, as ``moalign
eval --output DIR`` writes them, or in stage directories ``NN-eval/``), the training metrics ``metrics.jsonl``,
the stages' ``stage.json`` (their cost) and ``pareto.json`` (a sweep's or ``moalign pareto``'s fronts). Plots
are embedded PNGs, so the page needs no network. Sections (each always present, with a note when it has no
data): results table, win rate, objectives, constraints (per kind; the task suite's train and held-out
wordings), controllability, per-stage contribution, response lengths, training data (best-of-n level
histograms), reward model heads (``rm_eval.json``), learning and training curves, Pareto fronts, cost, responses.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_write_text, read_jsonl
from moalign.cost import stage_records, total_cost
from moalign.data.constraints import CONSTRAINTS, constraint_instruction
from moalign.errors import UserError
from moalign.eval.evaluate import EVAL_KIND, METRICS_FILE, SAMPLES_FILE
from moalign.report import plots
from moalign.report.fronts import PARETO_FILE
from moalign.report.summary import contribution_rows
from moalign.rm.evaluation import unrecognised_levels

WEAK_HEAD_SPEARMAN = 0.5
"""A reward-model head whose expected intensity correlates less than this with the held-out labels is
flagged as too weak to steer a policy (weight it down or replace it by the programmatic measure)."""

REPORT_FILE = "report.html"
SECTIONS = (
    ("results", "Results"),
    ("win-rate", "Win rate against the reference"),
    ("objectives", "Per-objective scores"),
    ("constraints", "Constraints: satisfaction per kind, and their wordings"),
    ("controllability", "Controllability"),
    ("contribution", "Per-stage contribution"),
    ("lengths", "Response lengths"),
    ("data", "Training data"),
    ("reward-model", "Reward model heads"),
    ("training", "Learning and training curves"),
    ("pareto", "Pareto fronts"),
    ("cost", "Cost"),
    ("responses", "Responses side by side"),
)
"""Section ids and titles, in page order."""
MAX_RESPONSES = 40
TASK_SUITE = "builtin:ifeval-lite"
"""Evaluations on this dataset (or its tagged variant) asked for constraints in the registry's wordings."""
EXAMPLE_KEYWORDS = ("tides", "moon", "coast")
"""The topic keywords the wordings table's example parameters are drawn for."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;margin:0;font-size:0.85em;max-width:40em}.note{color:#777}
img{max-width:100%}nav a{margin-right:1em}
"""


@dataclass
class Evaluation:
    """One evaluation found in a run directory."""

    name: str
    """The directory it came from (the run root's or a stage directory's name)."""
    metrics: dict[str, Any]
    samples: list[dict[str, Any]]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", source=str(path)) from None


def find_evaluations(root: str | Path) -> list[Evaluation]:
    """Evaluations under ``root`` (its own ``metrics.json`` and its stage directories'), in stage order."""
    root = Path(root)
    found = []
    for directory in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        path = directory / METRICS_FILE
        if not path.is_file():
            continue
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"not valid JSON: {exc.msg}", source=str(path)) from None
        if isinstance(metrics, dict) and metrics.get("kind") == EVAL_KIND:
            name = directory.resolve().name
            found.append(Evaluation(name=name, metrics=metrics, samples=read_jsonl(directory / SAMPLES_FILE)))
    return found


def fmt(value: Any, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    """A table cell: numbers rounded, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * scale:.{digits}f}{suffix}"
    return str(value)


def results_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The papers' results table (seed 000, seed 004 table 1), one row per model: average judge reward,
    its difference to the reference, win rate with interval and ties, wins out of N, BLEU-4, perplexity."""
    rows = []
    for label, m in metrics["models"].items():
        wr = m.get("win_rate") or {}
        rows.append(
            {
                "model": label,
                "spec": m["spec"],
                "avg_reward": m["reward"]["mean"],
                "reward_diff": m.get("reward_diff"),
                "win_rate": wr.get("rate"),
                "interval": wr.get("interval"),
                "wins": wr.get("wins"),
                "ties": wr.get("ties"),
                "n": wr.get("n"),
                "bleu1": (m.get("bleu") or {}).get("bleu1"),
                "bleu2": (m.get("bleu") or {}).get("bleu2"),
                "bleu4": (m.get("bleu") or {}).get("bleu4"),
                "perplexity": m.get("perplexity"),
                "tokens_mean": m["length"]["tokens"]["mean"],
            }
        )
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{escape(alt)}"></p>' if uri else '<p class="note">No data.</p>'


def results_section(ev: Evaluation) -> str:
    m = ev.metrics
    rows = []
    for r in results_rows(m):
        interval = r["interval"]
        wr = fmt(r["win_rate"], 1, 100, "%") + (
            f" [{fmt(interval[0], 1, 100)}, {fmt(interval[1], 1, 100)}]" if interval else ""
        )
        wins = "–" if r["n"] is None else f"{r['wins']} / {r['n']} ({r['ties']} ties)"
        rows.append(
            [
                f"{escape(r['model'])}<br><small>{escape(str(r['spec']))}</small>",
                fmt(r["avg_reward"]),
                fmt(r["reward_diff"]),
                wr,
                wins,
                fmt(r["bleu1"], 2),
                fmt(r["bleu2"], 2),
                fmt(r["bleu4"], 2),
                fmt(r["perplexity"], 2),
                fmt(r["tokens_mean"], 1),
            ]
        )
    header = [
        "Model",
        "Avg reward",
        "Diff to reference",
        "Win rate [95% CI]",
        "Wins / N",
        "BLEU-1",
        "BLEU-2",
        "BLEU-4",
        "Perplexity",
        "Mean tokens",
    ]
    dec = m["decoding"]
    about = (
        f"{escape(str(m['dataset']))} ({escape(str(m['split']))}), {m['num_prompts']} prompts; decoding "
        f"{escape(str(dec['preset']))}, max {dec['max_new_tokens']} new tokens; judge "
        f"<code>{escape(json.dumps(m['judge']))}</code>; ties count half a win."
    )
    return f"<h3>Evaluation: {escape(ev.name)}</h3><p>{about}</p>" + _table(header, rows)


def objectives_section(ev: Evaluation) -> str:
    models = ev.metrics["models"]
    names = list(ev.metrics["objectives"])
    rows = [[escape(label), *(fmt(m["objectives"].get(n)) for n in names)] for label, m in models.items()]
    chart = plots.radar(names, {label: [m["objectives"].get(n) for n in names] for label, m in models.items()})
    return _table(["Model", *names], rows) + _img(chart, "per-objective scores")


def constraints_section(ev: Evaluation) -> str:
    """Each model's constraint satisfaction per kind (``models.LABEL.constraints`` of ``metrics.json``): the
    number of constraints of the kind and the share each model satisfied, then all constraints and prompts."""
    rates = {label: m.get("constraints") for label, m in ev.metrics["models"].items()}
    if not all(rates.values()):
        return '<p class="note">No constraint results in this evaluation (no constraints in its prompts).</p>'
    first = next(iter(rates.values()))

    def row(name: str, n: int, value: Callable[[Mapping[str, Any]], Any]) -> list[str]:
        return [name, str(n), *(fmt(value(r), 1, 100, "%") for r in rates.values())]

    rows = [
        row(escape(k), first["per_kind"][k]["n"], lambda r, k=k: r["per_kind"][k]["satisfied"])
        for k in sorted(first["per_kind"])
    ]
    rows.append(row("<b>all constraints</b>", first["constraints"], lambda r: r["constraint_level"]))
    rows.append(row("<b>prompts with every constraint met</b>", first["prompts"], lambda r: r["prompt_level"]))
    split = str(ev.metrics["split"])
    about = f"Share of constraints satisfied, {escape(split)} split"
    if str(ev.metrics["dataset"]).startswith(TASK_SUITE):
        side = "training" if split == "train" else "held-out"
        about += f"; its prompts ask in the {side} wordings (listed below)"
    return f"<p>{about}.</p>" + _table(["Kind", "N", *map(escape, rates)], rows)


def wording_rows(keywords: Sequence[str] = EXAMPLE_KEYWORDS) -> list[tuple[str, dict[str, Any], list[str], list[str]]]:
    """Per constraint kind: example parameters (of a few draws of its sampler seeded by its name, the first with
    the most parameters) and its training and held-out wordings rendered with them."""
    rows = []
    for name in CONSTRAINTS.names():
        kind = CONSTRAINTS.get(name)
        draws = [kind.sample(random.Random(f"report/{name}/{i}"), {"keywords": tuple(keywords)}) for i in range(8)]
        constraint = {"kind": name, **max(draws, key=len)}
        texts = [
            [constraint_instruction(constraint, held_out, i) for i in range(len(kind.wordings(held_out)))]
            for held_out in (False, True)
        ]
        rows.append((name, {k: v for k, v in constraint.items() if k != "kind"}, texts[0], texts[1]))
    return rows


def wordings_section() -> str:
    """The task suite's wordings of every constraint kind, training and held-out side by side."""

    def cell(texts: Sequence[str]) -> str:
        return "<br>".join(f"{i + 1}. {escape(t)}" for i, t in enumerate(texts))

    rows = [
        [escape(name), escape(json.dumps(params)), cell(train), cell(held)]
        for name, params, train, held in wording_rows()
    ]
    note = (
        f"<p>How the task suite ({escape(TASK_SUITE)}) asks for each constraint: a train prompt in one of the "
        "training wordings, a validation or test prompt in one of the held-out wordings, which share no phrase "
        "with them (example parameters).</p>"
    )
    return (
        "<h3>Wordings</h3>"
        + note
        + _table(["Kind", "Example parameters", "Training wordings", "Held-out wordings"], rows, numeric_from=4)
    )


def controllability_section(ev: Evaluation) -> str:
    ctrl = ev.metrics.get("controllability")
    if not ctrl:
        return '<p class="note">No controllability evaluation in this run.</p>'
    dims = list(dict.fromkeys(d for r in ctrl.values() for d in r["sweeps"]))
    rows = [[escape(label), *(fmt(r["sweeps"].get(d, {}).get("spearman")) for d in dims)] for label, r in ctrl.items()]
    out = "<p>Spearman correlation between requested and measured intensity:</p>"
    out += _table(["Model", *dims], rows) + _img(plots.controllability_curves(ctrl), "controllability curves")
    for label, r in ctrl.items():
        for pair in r["pairs"]:
            dnames = list(pair["combinations"][0]["scores"]) if pair["combinations"] else pair["dimensions"]
            series = {
                " ".join(f"<{d} {v}>" for d, v in c["tags"].items()): [c["scores"][d] for d in dnames]
                for c in pair["combinations"]
            }
            out += _img(plots.radar(dnames, series, f"{label}: measured level per tag combination"), "pair radar")
    return out


def contribution_section(ev: Evaluation) -> str:
    if len(ev.metrics["models"]) < 3:
        return '<p class="note">One trained model evaluated: evaluate every stage\'s model (moalign demo --ablate).</p>'
    header, rows = contribution_rows(ev.metrics)
    note = "<p>Each model against the one before it in the chain: what that stage added.</p>"
    return note + _table(header, [[escape(r[0]), *r[1:]] for r in rows])


def data_section(stages: Sequence[Mapping[str, Any]]) -> str:
    """Each best-of-n stage's data: samples drawn, augmented, cut off, SFT rows, pairs, and the SFT set's
    tags per level and dimension (``data/levels/DIM/LEVEL`` in its summary)."""
    parts = []
    for r in stages:
        summary = r.get("summary") or {}
        if r.get("type") != "best_of_n":
            continue
        keys = ("data/samples", "data/augmented", "data/truncated", "data/sft", "data/pairs")
        counts = _table(
            ["Stage", *(k.split("/")[1] for k in keys)], [[escape(r["stage"]), *(fmt(summary.get(k), 0) for k in keys)]]
        )
        dims = sorted({k.split("/")[2] for k in summary if k.startswith("data/levels/")})
        levels = sorted({int(k.split("/")[3]) for k in summary if k.startswith("data/levels/")})
        rows = [[escape(d), *(fmt(summary.get(f"data/levels/{d}/{n}"), 0) for n in levels)] for d in dims]
        hist = _table(["SFT rows per tag level", *map(str, levels)], rows) if dims else ""
        parts.append(counts + hist)
    return "".join(parts) or '<p class="note">No best_of_n stage in this run.</p>'


def reward_model_section(root: Path) -> str:
    """Each reward model's heads on its held-out samples: accuracy, Spearman of expected intensity vs label,
    and the levels each head does not recognise (:func:`~moalign.rm.evaluation.unrecognised_levels`)."""
    parts = []
    for path in sorted(root.glob("[0-9][0-9]-*/rm_eval.json")):
        heads = (_read_json(path) or {}).get("heads", {})
        rows = []
        for dim, h in heads.items():
            rho = h.get("spearman")
            weak = rho is None or rho < WEAK_HEAD_SPEARMAN
            blind = unrecognised_levels(h.get("confusion_matrix") or [])
            verdict = f"too weak to steer (Spearman < {WEAK_HEAD_SPEARMAN})" if weak else "usable"
            if blind:
                many = len(blind) > 1
                named = f"level{'s' if many else ''} {', '.join(map(str, blind))}"
                verdict += f"; {named} recalled below chance (no reward for steering to {'them' if many else 'it'})"
            rows.append(
                [
                    escape(dim),
                    fmt(h.get("support"), 0),
                    fmt(h.get("intensity_accuracy")),
                    fmt(h.get("chance_intensity_accuracy")),
                    fmt(h.get("preference_accuracy")),
                    fmt(rho),
                    verdict,
                ]
            )
        header = ["Head", "Held-out", "Accuracy", "Chance", "Preference acc.", "Spearman", "Verdict"]
        parts.append(f"<h3>{escape(path.parent.name)}</h3>" + _table(header, rows))
    return "".join(parts) or '<p class="note">No reward model (rm_eval.json) in this run.</p>'


def lengths_section(ev: Evaluation) -> str:
    labels = list(ev.metrics["models"])
    lengths = {
        label: [int(s["num_tokens"][label]) for s in ev.samples if label in s.get("num_tokens", {})] for label in labels
    }
    rows = []
    for label, m in ev.metrics["models"].items():
        t, w = m["length"]["tokens"], m["length"]["words"]
        rows.append(
            [
                escape(label),
                fmt(t["mean"], 1),
                fmt(t["median"], 1),
                fmt(t["std"], 1),
                fmt(t["max"], 0),
                fmt(w["mean"], 1),
            ]
        )
    header = ["Model", "Mean tokens", "Median", "Std", "Max", "Mean words"]
    return _table(header, rows) + _img(plots.length_histograms(lengths), "length histograms")


def responses_section(ev: Evaluation) -> str:
    labels = list(ev.metrics["models"])
    header = "".join(f"<th>{escape(label)}</th>" for label in labels)
    rows = []
    for s in ev.samples[:MAX_RESPONSES]:
        cells = []
        for label in labels:
            score = (s.get("scores", {}).get(label) or {}).get("total")
            text = s.get("responses", {}).get(label, "")
            cells.append(f"<td><pre>{escape(text)}</pre><small>score {fmt(score)}</small></td>")
        rows.append(f"<tr><td><pre>{escape(s['prompt'])}</pre></td>{''.join(cells)}</tr>")
    more = len(ev.samples) - MAX_RESPONSES
    note = f'<p class="note">{more} more in samples.jsonl.</p>' if more > 0 else ""
    return f"<table><thead><tr><th>Prompt</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"


def pareto_section(pareto: Mapping[str, Any] | None) -> str:
    """The fronts of every method on one chart and each method's hypervolume (``pareto.json``)."""
    if not pareto:
        return '<p class="note">No Pareto front here (a sweep, or moalign pareto, writes pareto.json).</p>'
    names, ref = pareto["objectives"], pareto["reference"]
    rows = [
        [
            escape(m["name"]),
            str(len(m["points"])),
            str(sum(p["on_front"] for p in m["points"])),
            fmt(m["hypervolume"], 4),
            escape(", ".join(p["label"] for p in m["points"] if p["on_front"])),
        ]
        for m in pareto["methods"]
    ]
    about = (
        f"<p>Objectives (maximised): {escape(', '.join(names))}; hypervolume above the reference point "
        f"({', '.join(fmt(r) for r in ref)}, {escape(pareto['reference_source'])}).</p>"
    )
    notes = "".join(f'<p class="note">{escape(w)}</p>' for w in pareto.get("warnings", []))
    chart = _img(plots.pareto_fronts(names, pareto["methods"], ref), "Pareto fronts")
    table = _table(["Method", "Points", "On the front", "Hypervolume", "Front"], rows, numeric_from=1)
    return about + chart + table + notes


def _hours(seconds: Any) -> str:
    return fmt(None if seconds is None else seconds / 3600, 4)


def cost_section(pareto: Mapping[str, Any] | None, stages: Sequence[Mapping[str, Any]]) -> str:
    """Training cost (seed 002 table 8): per method from ``pareto.json``, else per stage of this run."""
    header = [
        "Method",
        "Policies trained",
        "GPU hours",
        "Wall hours",
        "CPU hours",
        "Tokens generated",
        "Tokens trained",
    ]
    if pareto:
        rows = [
            [escape(m["name"]), fmt(m["cost"]["policies_trained"], 0)] + _cost_cells(m["cost"])
            for m in pareto["methods"]
        ]
        note = "Training stages of the runs that produced each method's policies; evaluation excluded."
        return f"<p>{note}</p>" + _table(header, rows)
    if not stages:
        return '<p class="note">No finished stage (NN-STAGE/stage.json) in this run.</p>'
    rows = [[escape(str(r["stage"])), "–"] + _cost_cells(r) for r in stages]
    rows.append(
        ["<b>total (training)</b>", "–"] + _cost_cells(total_cost(r for r in stages if r.get("type") != "eval"))
    )
    return _table(["Stage", *header[1:]], rows)


def _cost_cells(cost: Mapping[str, Any]) -> list[str]:
    tokens = [fmt(cost.get(k), 0) for k in ("tokens_generated", "tokens_trained")]
    return [_hours(cost.get("gpu_time_s")), _hours(cost.get("wall_time_s")), _hours(cost.get("cpu_time_s")), *tokens]


def render_report(
    title: str,
    evaluations: Sequence[Evaluation],
    training: Sequence[Mapping[str, Any]],
    *,
    pareto: Mapping[str, Any] | None = None,
    stages: Sequence[Mapping[str, Any]] = (),
    root: Path | None = None,
) -> str:
    """The whole self-contained ``report.html`` as a string: every section, each with a note where it has no data."""
    none = '<p class="note">No evaluation in this run.</p>'
    bodies: dict[str, str] = {}
    each = {
        "results": results_section,
        "win-rate": lambda ev: _img(plots.win_rate_bars(ev.metrics["models"]), "win rate"),
        "objectives": objectives_section,
        "constraints": constraints_section,
        "controllability": controllability_section,
        "contribution": contribution_section,
        "lengths": lengths_section,
        "responses": responses_section,
    }
    for key, build in each.items():
        heading = len(evaluations) > 1 and key != "results"
        parts = [(f"<h3>{escape(ev.name)}</h3>" if heading else "") + build(ev) for ev in evaluations]
        bodies[key] = "".join(parts) or none
    if any(str(ev.metrics["dataset"]).startswith(TASK_SUITE) for ev in evaluations):
        bodies["constraints"] += wordings_section()
    curves = [(plots.training_curves(training, held_out=True), "learning curves on held-out prompts")]
    curves.append((plots.training_curves(training), "training curves"))
    bodies["training"] = "".join(f"<p>{escape(alt.capitalize())}:</p>" + _img(png, alt) for png, alt in curves if png)
    bodies["training"] = bodies["training"] or '<p class="note">No training metrics (metrics.jsonl) in this run.</p>'
    bodies["data"] = data_section(stages)
    bodies["reward-model"] = reward_model_section(root) if root is not None else ""
    bodies["pareto"] = pareto_section(pareto)
    bodies["cost"] = cost_section(pareto, stages)
    nav = "".join(f'<a href="#{sid}">{escape(t)}</a>' for sid, t in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{escape(t)}</h2>{bodies[sid]}</section>' for sid, t in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1><nav>{nav}</nav>{sections}</body></html>\n"
    )


def build_report(root: str | Path) -> Path:
    """(Re)build ``ROOT/report.html`` from the run directory alone; returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError("run directory not found", source=str(root))
    evaluations = find_evaluations(root)
    training = read_jsonl(root / "metrics.jsonl")
    pareto = _read_json(root / PARETO_FILE)
    stages = stage_records(root)
    if not evaluations and not training and not pareto:
        raise UserError(
            f"nothing to report: no {METRICS_FILE} of an evaluation, no metrics.jsonl and no {PARETO_FILE}",
            source=str(root),
        )
    title = f"moalign report: {root.resolve().name}"
    path = root / REPORT_FILE
    atomic_write_text(path, render_report(title, evaluations, training, pareto=pareto, stages=stages, root=root))
    return path
