"""Config keys every trainer-backed stage shares, named as in transformers/TRL, and their translation.

A stage config derives from :class:`TrainerStageConfig`; :func:`trainer_kwargs` turns it into the
keyword arguments of a TRL ``*Config`` (which is a ``transformers.TrainingArguments``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from moalign.budget import Budget, source_rows, training_steps
from moalign.config.base import StrictModel
from moalign.data.adapters import DatasetSpec
from moalign.precision import accelerator_available, resolve_bf16


class LoraSpec(StrictModel):
    """LoRA adapters (peft ``LoraConfig`` names)."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"

    def to_peft(self, task_type: str | None = "CAUSAL_LM") -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules,
            task_type=task_type,
        )


class TrainerStageConfig(StrictModel):
    """Keys shared by the trainer-backed stages (transformers ``TrainingArguments`` names)."""

    dataset: DatasetSpec
    """``builtin:...``, a local json/jsonl/parquet/csv file, a hub id, ``stage:TYPE/FILE`` (an earlier
    stage's output in this run) or an adapter spec (:mod:`moalign.data.adapters`)."""
    split: str = "train"
    eval_dataset: DatasetSpec | None = None
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    """Held-out share of ``dataset`` for validation when ``eval_dataset`` is not given."""
    num_samples: int | None = Field(None, gt=0)
    """Use only the first N records (after the split)."""
    learning_rate: float = Field(2e-5, gt=0.0)
    per_device_train_batch_size: int = Field(4, gt=0)
    per_device_eval_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    num_train_epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int | None = 512
    logging_steps: int = 1
    eval_steps: int | None = None
    """Validate every N steps (needs a validation set); the best checkpoint is restored at the end."""
    save_steps: int | None = Field(None, gt=0)
    """Write a resumable checkpoint (model, optimizer, scheduler, RNG, data position) every N steps;
    ``moalign run --resume`` continues from the latest complete one. Default: every ``eval_steps`` when
    validating, else none. With validation it must be a multiple of ``eval_steps``."""
    save_total_limit: int | None = Field(2, gt=0)
    """Checkpoints kept: the newest N and, when validating, the best (None: all)."""
    early_stopping_patience: int | None = None
    bf16: bool | None = None
    """bf16 autocast over float32 weights; None: where the device runs it natively, as TRL's default
    intends (:func:`moalign.precision.resolve_bf16`). The recipe's ``precision`` overrides it."""
    gradient_checkpointing: bool = False
    report_to: list[str] = Field(default_factory=list)
    """``tensorboard``, ``wandb``, ``trackio``...; metrics.jsonl is always written."""
    peft: LoraSpec | None = None
    dataloader_num_workers: int = 0

    @model_validator(mode="after")
    def _check_save_steps(self) -> TrainerStageConfig:
        if self.save_steps is not None and self.eval_steps is not None and self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}): "
                "the best checkpoint is chosen among the validated ones"
            )
        return self


def trainer_budget(config: TrainerStageConfig, sequences_per_record: int = 1) -> Budget:
    """Trained tokens of a trainer-backed stage: ``per_device_train_batch_size`` x ``gradient_accumulation_steps``
    records a step, each ``sequences_per_record`` sequences (DPO: chosen and rejected) of ``max_length``. Its
    first step trains at least one record (TRL's trainers take a shorter last batch)."""
    rows = source_rows(config.dataset, config.num_samples)
    if rows is not None and config.eval_dataset is None:
        rows = round(rows * (1 - config.validation_fraction))
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    steps = training_steps(config.max_steps, rows, config.num_train_epochs, per_step)
    sequences = per_step * sequences_per_record
    return Budget(steps, sequences, config.max_length or 0, "trained tokens (max_length each)", first_step=1)


def stage_accelerator(*, bf16: bool, gradient_accumulation_steps: int = 1) -> Any:
    """An ``accelerate.Accelerator`` for one stage of a run.

    accelerate keeps its settings in a process-wide singleton that refuses a second mixed-precision
    setting, but the stages of one recipe run in one process and may differ (a bf16 stage after an
    fp32 one). The stage-level state is reset first; the distributed process state is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(
        cpu=not accelerator_available(),
        mixed_precision="bf16" if bf16 else "no",
        gradient_accumulation_steps=gradient_accumulation_steps,
    )


def trainer_kwargs(
    config: TrainerStageConfig, output_dir: Path, *, seed: int, has_eval: bool, best_metric: str = "eval_loss"
) -> dict[str, Any]:
    """Keyword arguments for a TRL ``*Config`` from the shared stage keys; when validating, the best
    checkpoint is the one with the best ``best_metric`` (transformers' rule: the lowest for a name ending
    in ``loss``, the highest otherwise, e.g. ``eval_reward``)."""
    evaluating = has_eval and config.eval_steps is not None
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "warmup_steps": config.warmup_steps or config.warmup_ratio,
        "lr_scheduler_type": config.lr_scheduler_type,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "logging_steps": config.logging_steps,
        "bf16": resolve_bf16(config.bf16),
        "use_cpu": not accelerator_available(),
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": config.report_to or "none",
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": config.dataloader_num_workers,
        "save_strategy": "no",
        "save_total_limit": config.save_total_limit,
        "eval_strategy": "no",
        "disable_tqdm": False,
    }
    if config.save_steps is not None:
        kwargs.update(save_strategy="steps", save_steps=config.save_steps)
    if evaluating:
        kwargs.update(
            eval_strategy="steps",
            eval_steps=config.eval_steps,
            save_strategy="steps",
            save_steps=config.save_steps or config.eval_steps,
            load_best_model_at_end=True,
            metric_for_best_model=best_metric,
        )
    return kwargs
