"""Typed settings of reward-model training (the ``reward_model`` stage and ``moalign rm train``).

Key names follow ``transformers.TrainingArguments`` where one exists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from moalign.config.base import StrictModel
from moalign.data.adapters import DatasetSpec
from moalign.rm.labels import DATATYPES, Bins, preset_name
from moalign.training.args import LoraSpec


class ColumnMap(StrictModel):
    """Where the fields of a record are in a data source.

    Values are column names or dotted paths into nested columns (``annotations.helpfulness.Rating``).
    ``ratings`` is either one column holding a ``{dimension: rating}`` mapping, or a mapping
    ``{dimension: column}``. With ``explode: completions`` each element of the list column
    ``completions`` becomes its own record and paths under ``completions.`` address that element
    (UltraFeedback keeps four rated responses per prompt that way).
    """

    prompt: str = "prompt"
    response: str = "response"
    ratings: str | dict[str, str] = "ratings"
    chosen: str = "chosen"
    rejected: str = "rejected"
    explode: str | None = None


class RewardModelConfig(StrictModel):
    """Train a multi-head classification reward model (seed 002, section 2.2) on rated responses.

    ``dataset`` is a JSONL file of ``{"prompt", "response", "ratings": {dimension: int | null}}``
    records (what the ``best_of_n`` stage writes to ``ratings.jsonl``; in a recipe,
    ``stage:best_of_n/ratings.jsonl``), any other local file ``datasets`` can read, or a hub dataset id.
    """

    dataset: DatasetSpec
    """A JSONL/csv/json/parquet file, a hub id, ``stage:TYPE/FILE``, or ``ratings`` adapter spec(s)
    (:mod:`moalign.data.adapters`; the stage writes their records to its ``data/`` folder)."""
    split: str = "train"
    columns: ColumnMap = Field(default_factory=ColumnMap)
    max_samples: int | None = Field(None, ge=1)
    backbone: str = "builtin:minilm-l6"
    dimensions: dict[str, int] | str | None = None
    """Dimension -> number of intensity classes, or a seed 002 preset ``datatype1``..``datatype4``."""
    bins: dict[str, Bins] | None = None
    """Custom rating -> class bins per dimension (see :class:`moalign.rm.labels.Bins`)."""
    pooling: Literal["auto", "mean", "last"] = "auto"
    max_length: int = Field(512, ge=8)
    loss: Literal["per_head", "joint_softmax"] = "per_head"
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    per_device_train_batch_size: int = Field(16, ge=1)
    per_device_eval_batch_size: int = Field(32, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    """Positive: train exactly this many optimiser steps (overrides ``num_train_epochs``)."""
    eval_steps: int = Field(50, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1)
    """Write a resumable checkpoint every N optimiser steps (the ``reward_model`` stage; ``moalign run
    --resume`` continues from the latest complete one)."""
    save_total_limit: int | None = Field(2, ge=1)
    """Checkpoints kept: the newest N and the one of the best validation step (None: all)."""
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    eval_dataset: DatasetSpec | None = None
    """A separate validation source (same columns); replaces ``validation_fraction``."""
    metric_for_best_model: Literal["loss", "intensity_accuracy", "preference_accuracy"] = "loss"
    bf16: bool | None = None
    """None: bf16 autocast where the device runs it fast (see :func:`moalign.precision.resolve_bf16`)."""
    peft: LoraSpec | None = None
    """LoRA on the backbone (the heads are always trained in full); merged into the saved weights."""
    seed: int | None = None
    """None: the recipe's seed."""

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, value: dict[str, int] | str | None) -> dict[str, int] | str | None:
        if isinstance(value, dict):
            if not value:
                raise ValueError("give at least one dimension")
            small = [name for name, classes in value.items() if classes < 2]
            if small:
                raise ValueError(f"a head needs at least 2 classes: {', '.join(small)}")
        if isinstance(value, str) and preset_name(value) is None:
            raise ValueError(f"'{value}' is not a preset ({', '.join(DATATYPES)}) nor a mapping of name -> classes")
        return value
