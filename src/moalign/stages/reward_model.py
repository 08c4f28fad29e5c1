"""The ``reward_model`` stage: train seed 002's multi-head classification reward model.

It trains on rated responses (e.g. the ``ratings.jsonl`` a ``best_of_n`` stage writes), writes the best model
to ``<stage dir>/model`` and its validation report (``rm_eval.json``, ``rm_eval.png``) beside it. The policy
model passes through unchanged; the summary names the reward model for the stages (and the ``multihead``
scorer) that use it. In a recipe: ``- reward_model: {dataset: stage:best_of_n/ratings.jsonl,
dimensions: {constraints: 5, length: 3}, max_steps: 300}``.
"""

from __future__ import annotations

import json

from moalign.budget import Budget, source_rows, training_steps
from moalign.data.adapters import AdapterSpec, DatasetSpec
from moalign.data.specs import STAGE_PREFIX, stage_output
from moalign.rm.config import RewardModelConfig
from moalign.stages.base import StageContext, StageResult, register_stage


def _source(spec: DatasetSpec | None, ctx: StageContext, name: str = "train") -> str | None:
    """A dataset spec as a source the reward-model loader reads: ``stage:TYPE/FILE`` references resolved
    to the file in this run, adapter specs read into ``<stage dir>/data/NAME.jsonl``."""
    if isinstance(spec, AdapterSpec | list):
        from moalign.atomic import atomic_write_text
        from moalign.data.adapters import load_adapted

        path = ctx.dir / "data" / f"{name}.jsonl"
        rows = load_adapted(spec, ctx.recipe.tag_dimensions).to_list()
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
        return str(path)
    if spec is None or not spec.startswith(STAGE_PREFIX):
        return spec
    return str(stage_output(spec, ctx))


def reward_model_budget(config: RewardModelConfig) -> Budget:
    """Tokens the reward model scores in training: ``per_device_train_batch_size`` x
    ``gradient_accumulation_steps`` rated responses of ``max_length`` a step."""
    rows = source_rows(config.dataset, config.max_samples)
    if rows is not None and config.eval_dataset is None:
        rows = round(rows * (1 - config.validation_fraction))
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    steps = training_steps(config.max_steps, rows, config.num_train_epochs, per_step)
    return Budget(steps, per_step, config.max_length, "scored tokens (max_length each)")


@register_stage("reward_model", RewardModelConfig, consumes=("ratings",), budget=reward_model_budget)
def run_reward_model(ctx: StageContext, config: RewardModelConfig) -> StageResult:
    from moalign.rm.training import train_reward_model

    result = train_reward_model(
        config,
        ctx.dir / "model",
        seed=config.seed if config.seed is not None else ctx.seed,
        report_dir=ctx.dir,
        checkpoint_dir=ctx.checkpoint_dir,
        checkpoint_extra=lambda: {"metrics_bytes": ctx.run.metrics_size()},
        log=lambda metrics, step: ctx.log(metrics, step=step),
        dataset=_source(config.dataset, ctx, "train"),
        eval_dataset=_source(config.eval_dataset, ctx, "validation"),
    )
    return StageResult(
        model=None,
        summary={
            "reward_model": str(result.model_dir),
            "dimensions": result.dimensions,
            "steps": result.steps,
            "best_step": result.best_step,
            "train_samples": result.train_samples,
            "validation_samples": result.validation_samples,
            "validation": result.best,
        },
    )
