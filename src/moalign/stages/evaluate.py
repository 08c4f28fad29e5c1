"""The ``eval`` stage: evaluate the run's models against its start model.

Keys: ``models`` (default: the model this stage receives), ``reference`` (default: the recipe's start model),
``dataset``, ``split``, ``num_samples``, ``decoding`` (greedy | sampled | beam), ``judge`` (a scorer spec;
default: the recipe's objectives aggregated) and ``controllability``. It writes ``metrics.json``,
``samples.jsonl`` (and the swept responses, ``controllability.jsonl``) into its stage directory, logs the
headline numbers as ``eval/<model>/<metric>`` and hands on no new model; the pipeline then rebuilds the
run's ``report.html``.

Notes: docs/papers.md#stagesevaluatepy (an example stage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from moalign.budget import Budget
from moalign.errors import UserError
from moalign.eval.evaluate import EvalSettings, evaluate, flat_metrics, judge_reward, load_eval_records
from moalign.eval.generations import GenerationCache
from moalign.processes import is_main_process
from moalign.stages.base import StageContext, StageResult, register_stage

STAGE_MODEL_PREFIX = "stage:"


class EvalStageConfig(EvalSettings):
    """Keys of the ``eval`` stage: the evaluation settings plus which models to compare."""

    models: list[str] = Field(default_factory=list)
    """Candidate models: specs, or ``stage:TYPE`` for the model the latest earlier stage of that type
    wrote. Empty: the model this stage receives."""
    reference: str | None = None
    """The model every candidate is judged against (a spec, or ``stage:TYPE``); default: the recipe's start
    model."""
    cache: bool = True
    """Reuse cached generations (``$MOALIGN_HOME/generations``)."""


def stage_model(spec: str, ctx: StageContext) -> str:
    """Resolve ``stage:TYPE`` to the output model of the latest earlier stage of that type."""
    if not spec.startswith(STAGE_MODEL_PREFIX):
        return spec
    stage_type = spec.removeprefix(STAGE_MODEL_PREFIX)
    for index in range(ctx.index - 1, 0, -1):
        record = ctx.run.root / f"{index:02d}-{stage_type}" / "stage.json"
        if record.is_file():
            model = ctx.run.model_spec(json.loads(record.read_text())["output_model"])
            if model is None:
                raise UserError(f"eval: stage {record.parent.name} wrote no model")
            return model
    raise UserError(f"eval: model '{spec}': no earlier '{stage_type}' stage in this recipe")


def candidate_labels(specs: list[str], ctx: StageContext) -> dict[str, str]:
    """``{label: model}``: ``stage:TYPE`` entries are labelled by their stage type, others by their last path part."""
    from moalign.eval.evaluate import unique_labels

    names = [s.removeprefix(STAGE_MODEL_PREFIX) if s.startswith(STAGE_MODEL_PREFIX) else s for s in specs]
    return dict(zip(unique_labels(names), [stage_model(s, ctx) for s in specs], strict=True))


def add_evaluation_to_cards(metrics: dict[str, Any], candidates: dict[str, str], ctx: StageContext) -> None:
    """Each candidate saved in this run (with a model card) gets its evaluation in its card."""
    from moalign.models.card import evaluation_section, read_card, with_evaluation, write_card

    root = ctx.run.root.resolve()
    for label, spec in candidates.items():
        path = Path(spec)
        card = read_card(path) if path.is_dir() and path.resolve().is_relative_to(root) else None
        if card is not None:
            section = evaluation_section(metrics, label, ctx.run.stage_name(ctx.index, ctx.stage_type))
            write_card(path, with_evaluation(card, section))


def eval_budget(config: EvalStageConfig) -> Budget:
    """Tokens generated: ``num_samples`` answers of at most ``max_new_tokens`` from each candidate and the reference."""
    models = max(1, len(config.models)) + 1
    return Budget(1, config.num_samples * models, config.max_new_tokens, "generated tokens")


@register_stage("eval", EvalStageConfig, consumes=("prompts", "preferences"), budget=eval_budget)
def run(ctx: StageContext, config: EvalStageConfig) -> StageResult:
    """Evaluate the candidate models against the reference, write ``metrics.json`` and ``samples.jsonl`` into
    the stage directory and log the headline numbers as ``eval/<model>/<metric>``; hands on no new model."""
    from moalign.data.specs import resolve_stage_refs
    from moalign.rewards import MultiObjectiveReward

    candidates = candidate_labels(config.models or [ctx.model], ctx)
    reference = stage_model(config.reference, ctx) if config.reference else ctx.recipe.model
    settings = EvalSettings.model_validate(  # stage:TYPE/FILE references (judge, measure scorers) resolved
        resolve_stage_refs(config.model_dump(mode="json", exclude={"models", "reference", "cache"}), ctx)
    )
    records = load_eval_records(config.dataset, config.split, config.num_samples, ctx)
    if settings.judge is None and ctx.recipe.objectives:  # the run's objectives, stage:TYPE/FILE references resolved
        judge = MultiObjectiveReward.for_stage(ctx)
        earlier = sorted((d for d in ctx.run.root.glob("[0-9][0-9]-*") if int(d.name[:2]) < ctx.index), reverse=True)
        judge.load_trained_statistics(earlier)  # MOSLIM: the statistics of the latest stage trained on this reward
    else:
        judge = judge_reward(settings.judge, ctx.recipe)
    metrics = evaluate(
        candidates,
        reference,
        settings,
        ctx.dir,
        records=records,
        judge=judge,
        tag_dimensions=ctx.recipe.tag_dimensions,
        cache=GenerationCache() if config.cache else None,
    )
    summary = flat_metrics(metrics)
    ctx.log(summary)
    if is_main_process():
        add_evaluation_to_cards(metrics, candidates, ctx)
    return StageResult(model=None, summary=summary)
