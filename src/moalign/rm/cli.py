"""``moalign rm``: train, evaluate and apply the multi-head reward model from the command line.

Data sources are JSONL files or anything ``datasets.load_dataset`` opens (local csv/json/parquet,
hub ids); ``--column KEY=PATH`` maps the record fields (see :class:`moalign.rm.config.ColumnMap`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from moalign.errors import UserError

rm_app = typer.Typer(
    help="The multi-head classification reward model (seed 002): train, eval, score.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ColumnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--column",
        help="Map a record field to a column or dotted path, e.g. prompt=instruction, "
        "ratings.helpfulness=completions.annotations.helpfulness.Rating, explode=completions (repeatable).",
    ),
]
SplitOption = Annotated[str, typer.Option(help="Split of a datasets source.")]
BatchOption = Annotated[int, typer.Option(help="Pairs per forward pass.")]
MaxSamplesOption = Annotated[int | None, typer.Option(help="Read at most this many records.")]


def _column_overrides(columns: list[str] | None) -> list[str]:
    out = []
    for expr in columns or []:
        key, sep, value = expr.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--column expects KEY=PATH, got '{expr}'")
        out.append(f"columns.{key.strip()}={value.strip()}")
    return out


def _column_map(columns: list[str] | None) -> Any:
    from pydantic import ValidationError

    from moalign.rm.config import ColumnMap

    data: dict[str, Any] = {}
    for expr in columns or []:
        key, sep, value = expr.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--column expects KEY=PATH, got '{expr}'")
        head, _, sub = key.strip().partition(".")
        if sub:
            existing = data.get(head)
            data[head] = {**(existing if isinstance(existing, dict) else {}), sub: value.strip()}
        else:
            data[head] = value.strip()
    try:
        return ColumnMap.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"--column: {problems}") from None


def _dimensions_value(text: str) -> Any:
    """``datatype3`` or ``helpfulness=5,honesty=5`` -> the ``dimensions`` config value."""
    if "=" not in text:
        return text
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, classes = part.partition("=")
        try:
            out[name.strip()] = int(classes)
        except ValueError:
            raise UserError(f"--dimensions: '{part}' is not NAME=CLASSES") from None
    return out


def _weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise UserError(f"--weights: '{part}' is not NAME=WEIGHT") from None
    return out


@rm_app.command("train")
def train(
    dataset: Annotated[str, typer.Argument(help="Rated records: JSONL path, local data file or hub dataset id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the model to (replaced).")],
    config: Annotated[Path | None, typer.Option(help="YAML file of reward_model stage keys.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone model spec.")] = None,
    dimensions: Annotated[
        str | None, typer.Option(help="NAME=CLASSES,... or a seed 002 preset datatype1..datatype4.")
    ] = None,
    column: ColumnOption = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps (overrides epochs).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any reward_model key, e.g. --set learning_rate=2e-5 (repeatable)."),
    ] = None,
) -> None:
    """Train a multi-head reward model; writes the model and its validation report (rm_eval.json/png)."""
    from pydantic import ValidationError

    from moalign.config.base import unknown_key_hint
    from moalign.config.yaml_source import YamlSource, apply_override, load_yaml
    from moalign.rm.config import RewardModelConfig
    from moalign.rm.training import train_reward_model

    source = load_yaml(config) if config else YamlSource(data={}, name="<command line>")
    if source.data is None:
        source.data = {}
    if not isinstance(source.data, dict):
        raise UserError("expected a mapping of reward_model keys", source=source.name)
    source.data["dataset"] = dataset
    if backbone:
        source.data["backbone"] = backbone
    if dimensions:
        source.data["dimensions"] = _dimensions_value(dimensions)
    if max_steps is not None:
        source.data["max_steps"] = max_steps
    for expr in _column_overrides(column) + list(set_ or []):
        apply_override(source, expr)
    try:
        settings = RewardModelConfig.model_validate(source.data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = unknown_key_hint(RewardModelConfig, loc) if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {source.where(loc)}: {'.'.join(map(str, loc))}: {msg}")
        raise UserError("invalid reward model settings\n" + "\n".join(lines), source=source.name) from None

    def log(metrics: dict[str, Any], step: int) -> None:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        typer.echo(f"step {step}: {shown}", err=True)

    result = train_reward_model(
        settings, output, seed=settings.seed if settings.seed is not None else seed, report_dir=output, log=log
    )
    typer.echo(
        json.dumps({"model": str(result.model_dir), "best_step": result.best_step, "validation": result.best}, indent=2)
    )


@rm_app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A trained reward model directory.")],
    dataset: Annotated[str, typer.Argument(help="Rated records, or (prompt, chosen, rejected) with --pairs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for rm_eval.json and rm_eval.png.")],
    pairs: Annotated[bool, typer.Option(help="The dataset holds (prompt, chosen, rejected) pairs.")] = False,
    dimensions: Annotated[
        str | None, typer.Option(help="Rating bins: a preset or NAME=CLASSES (default: those used in training).")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Head weights for pairwise accuracy, e.g. helpfulness=1,honesty=0.5.")
    ] = None,
    column: ColumnOption = None,
    split: SplitOption = "test",
    batch_size: BatchOption = 32,
    max_samples: MaxSamplesOption = None,
) -> None:
    """Intensity/preference accuracy and confusion matrix per head, or pairwise accuracy (--pairs)."""
    from moalign.rm.data import load_pairs, load_rated
    from moalign.rm.evaluation import evaluate_pairs, evaluate_rated, write_report
    from moalign.rm.labels import Bins, resolve_bins
    from moalign.rm.model import load, read_config

    columns = _column_map(column)
    rm = load(model)
    if pairs:
        records = load_pairs(dataset, columns, split=split, max_samples=max_samples)
        metrics = {"dataset": dataset, **evaluate_pairs(rm, records, batch_size, _weights(weights))}
    else:
        if dimensions:
            bins = resolve_bins(_dimensions_value(dimensions))
        else:
            saved = read_config(model).get("training", {}).get("bins")
            bins = {d: Bins.model_validate(b) for d, b in saved.items()} if saved else resolve_bins(dict(rm.dimensions))
        mismatch = {d: b.classes for d, b in bins.items() if rm.dimensions.get(d) != b.classes}
        if mismatch:
            raise UserError(f"--dimensions: {mismatch} do not match the model's heads {rm.dimensions}")
        records = load_rated(dataset, bins, columns, split=split, max_samples=max_samples)
        metrics = {"dataset": dataset, **evaluate_rated(rm, records, batch_size)}
    json_path, png_path = write_report(metrics, output)
    typer.echo(json_path.read_text(), nl=False)
    typer.echo(f"wrote {json_path} and {png_path}", err=True)


@rm_app.command("score")
def score(
    model: Annotated[Path, typer.Argument(help="A trained reward model directory.")],
    dataset: Annotated[str, typer.Argument(help="Records with a prompt and a response.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSONL file to write (default: stdout).")
    ] = None,
    column: ColumnOption = None,
    split: SplitOption = "train",
    batch_size: BatchOption = 32,
    max_samples: MaxSamplesOption = None,
) -> None:
    """Per-head class probabilities and expected intensities for each (prompt, response), as JSONL."""
    from moalign.atomic import atomic_write_text
    from moalign.rm.data import iter_rows, text_field
    from moalign.rm.model import load

    columns = _column_map(column)
    prompts, responses = [], []
    for where, row in iter_rows(dataset, split=split, explode=columns.explode):
        prompts.append(text_field(row, where, columns.prompt, "prompt"))
        responses.append(text_field(row, where, columns.response, "response"))
        if max_samples is not None and len(prompts) >= max_samples:
            break
    rm = load(model)
    scores = rm.score(prompts, responses, batch_size=batch_size)
    lines = []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        record = {
            "prompt": p,
            "response": r,
            "expected": {d: round(e[i].item(), 6) for d, e in scores.expected.items()},
            "probs": {d: [round(x, 6) for x in pr[i].tolist()] for d, pr in scores.probs.items()},
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines else "")
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        typer.echo(f"wrote {len(lines)} scores to {output}", err=True)


@rm_app.command("table")
def table(run: Annotated[Path, typer.Argument(help="A run directory with reward_model stages.")]) -> None:
    """The run's reward models side by side (seed 002 figure 4: accuracy per DataType), as markdown."""
    from moalign.rm.table import markdown_table, reward_model_rows

    typer.echo(markdown_table(reward_model_rows(run)), nl=False)
