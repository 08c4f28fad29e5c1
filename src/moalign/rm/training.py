"""Training of the multi-head reward model on the project's accelerate loop (:mod:`moalign.training.loop`).

A step is ``gradient_accumulation_steps`` batches of an endless, resumable pass over the shuffled data; the
loss is one of :mod:`moalign.losses.multihead` on ``forward -> {dimension: logits}``. It validates every
``eval_steps`` optimiser steps (and at the end), keeps the weights of the best validation result in memory
(only the trainable ones change) and writes that best model.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from moalign.errors import UserError
from moalign.losses.multihead import joint_softmax_cross_entropy, multihead_cross_entropy
from moalign.precision import resolve_bf16
from moalign.rm.config import RewardModelConfig
from moalign.rm.data import RatedExample, load_rated
from moalign.rm.evaluation import head_metrics, write_report
from moalign.rm.labels import resolve_bins
from moalign.rm.model import MultiHeadRewardModel
from moalign.training.args import stage_accelerator
from moalign.training.loop import LoopSettings, TrainingLoop

LOSSES = {"per_head": multihead_cross_entropy, "joint_softmax": joint_softmax_cross_entropy}
BEST_WEIGHTS = "best.safetensors"
"""In a training checkpoint: the trainable weights of the best validation step so far."""
Log = Callable[[dict[str, Any], int], None]


@dataclass
class TrainResult:
    model_dir: Path
    dimensions: dict[str, int]
    steps: int
    best_step: int
    best: dict[str, Any]
    """Validation metrics of the saved model (empty without validation data)."""
    train_samples: int
    validation_samples: int
    history: list[dict[str, Any]] = field(default_factory=list)


def split_by_prompt(
    examples: list[RatedExample], fraction: float, seed: int
) -> tuple[list[RatedExample], list[RatedExample]]:
    """Hold out about ``fraction`` of the examples, whole prompts at a time (no prompt on both sides)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    prompts = sorted({e.prompt for e in examples})
    random.Random(seed).shuffle(prompts)
    target = max(1, round(fraction * len(examples)))
    held: set[str] = set()
    count = 0
    sizes: dict[str, int] = {}
    for e in examples:
        sizes[e.prompt] = sizes.get(e.prompt, 0) + 1
    for p in prompts:
        if count >= target or len(held) == len(prompts) - 1:
            break
        held.add(p)
        count += sizes[p]
    return [e for e in examples if e.prompt not in held], [e for e in examples if e.prompt in held]


def label_tensor(examples: list[RatedExample], dimensions: dict[str, int]) -> torch.Tensor:
    """``[B, H]`` 0-based class indices, -100 where a dimension is unlabelled."""
    return torch.tensor(
        [[-100 if e.labels.get(d) is None else e.labels[d] - 1 for d in dimensions] for e in examples],
        dtype=torch.long,
    )


@dataclass
class LoaderPosition:
    """Where an endless pass over a shuffled ``DataLoader`` stands: the generator state its current epoch's
    order is drawn from, and the batches of that epoch already taken."""

    epoch_start: torch.Tensor
    consumed: int = 0


def endless_batches(
    loader: torch.utils.data.DataLoader, generator: torch.Generator, position: LoaderPosition
) -> Iterator[Any]:
    """The loader's batches, epoch after epoch, from ``position`` (kept up to date as batches are taken)."""
    while True:
        generator.set_state(position.epoch_start)  # the epoch's order is drawn from this state when the loader starts
        for batch in itertools.islice(loader, position.consumed, None):  # a resumed epoch skips the batches taken
            position.consumed += 1
            yield batch
        position.consumed, position.epoch_start = 0, generator.get_state()  # the next epoch draws a new order


def _better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new < old if metric == "loss" else new > old


@torch.no_grad()
def validate(
    model: MultiHeadRewardModel,
    examples: list[RatedExample],
    loss_fn: Callable[..., torch.Tensor],
    batch_size: int,
    autocast: Callable[[], Any],
) -> dict[str, Any]:
    """Mean loss per sample and :func:`head_metrics` over ``examples``."""
    was_training = model.training
    model.eval()
    total, probs = 0.0, {d: [] for d in model.dimensions}
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        enc = model.encode([e.prompt for e in batch], [e.response for e in batch])
        with autocast():
            logits = model(**{k: v.to(model.device) for k, v in enc.items()})
        labels = label_tensor(batch, model.dimensions).to(model.device)
        total += loss_fn(logits, labels).item() * len(batch)
        for d, z in logits.items():
            probs[d].append(z.float().softmax(-1).cpu())
    model.train(was_training)
    labels_by_dim = {d: [e.labels.get(d) for e in examples] for d in model.dimensions}
    metrics = head_metrics({d: torch.cat(p) for d, p in probs.items()}, labels_by_dim, model.dimensions)
    return {"loss": total / len(examples), **metrics["mean"], "heads": metrics["heads"]}


def train_reward_model(
    config: RewardModelConfig,
    model_dir: str | Path,
    *,
    seed: int = 0,
    report_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
    log: Log | None = None,
    dataset: str | None = None,
    eval_dataset: str | None = None,
) -> TrainResult:
    """Train per ``config``, save the best model to ``model_dir`` and its validation report to ``report_dir``.

    ``dataset``/``eval_dataset`` override the config's sources (the stage resolves run-relative paths).
    With ``checkpoint_dir`` and ``config.save_steps``, resumable checkpoints go there (accelerate's state,
    the best weights so far, the validation history, the data position and ``checkpoint_extra()``), and
    training continues from the latest complete one.
    """
    from safetensors.torch import load_file, save_file
    from transformers import set_seed

    from moalign.training.checkpoint import checkpoint_state, generator_from_text, generator_text

    log = log or (lambda metrics, step: None)
    bins = resolve_bins(config.dimensions, config.bins)
    dimensions = {d: b.classes for d, b in bins.items()}
    source = dataset or config.dataset
    examples = load_rated(source, bins, config.columns, split=config.split, max_samples=config.max_samples)
    if eval_dataset or config.eval_dataset:
        train_set = examples
        val_set = load_rated(eval_dataset or config.eval_dataset, bins, config.columns, split=config.split)
    else:
        train_set, val_set = split_by_prompt(examples, config.validation_fraction, seed)
    if not train_set:
        raise UserError(f"dataset '{source}': nothing left to train on after holding out validation data")

    set_seed(seed)
    model = MultiHeadRewardModel.from_backbone(
        config.backbone, dimensions, pooling=config.pooling, max_length=config.max_length
    )
    if config.peft is not None:
        from peft import get_peft_model

        model.backbone = get_peft_model(model.backbone, config.peft.to_peft(task_type=None))
    use_bf16 = resolve_bf16(config.bf16)
    accelerator = stage_accelerator(bf16=use_bf16, gradient_accumulation_steps=config.gradient_accumulation_steps)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.per_device_train_batch_size, shuffle=True, collate_fn=list, generator=generator
    )
    steps_per_epoch = max(1, math.ceil(len(loader) / config.gradient_accumulation_steps))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.num_train_epochs)
    settings = LoopSettings(
        max_steps=total_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=int(config.warmup_ratio * total_steps),
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        eval_steps=config.eval_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
    )
    loop = TrainingLoop(accelerator, model, settings)
    rm: MultiHeadRewardModel = accelerator.unwrap_model(loop.model)
    loss_fn = LOSSES[config.loss]

    history: list[dict[str, Any]] = []
    best_metric: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best: dict[str, Any] = {}
    best_step = 0
    running, seen = 0.0, 0
    position = LoaderPosition(generator.get_state())
    start = 0
    latest = loop.resume()
    if latest is not None:
        state = checkpoint_state(latest)
        start, running, seen = state["step"], state["running"], state["seen"]
        position = LoaderPosition(generator_from_text(state["epoch_rng"]), state["consumed"])
        history, best, best_step = state["history"], state["best"], state["best_step"]
        best_metric = state["best_metric"]
        if (latest / BEST_WEIGHTS).exists():
            best_state = load_file(latest / BEST_WEIGHTS)
    stream = endless_batches(loader, generator, position)

    def batch_loss(batch: list[RatedExample]) -> tuple[torch.Tensor, dict[str, float]]:
        nonlocal running, seen
        enc = rm.encode([e.prompt for e in batch], [e.response for e in batch])
        labels = label_tensor(batch, dimensions).to(accelerator.device)
        with accelerator.autocast():
            logits = loop.model(**{k: v.to(accelerator.device) for k, v in enc.items()})
        loss = loss_fn(logits, labels)
        running += loss.item()
        seen += 1
        return loss, {}

    def log_loss(step: int, loss: torch.Tensor, metrics: dict[str, float]) -> None:
        nonlocal running, seen
        log({"train/loss": running / seen, "train/learning_rate": loop.learning_rate}, step)
        running, seen = 0.0, 0

    def evaluate(step: int) -> None:
        nonlocal best_metric, best_state, best, best_step
        if not val_set:
            return
        metrics = validate(rm, val_set, loss_fn, config.per_device_eval_batch_size, accelerator.autocast)
        flat = {f"eval/{k}": v for k, v in metrics.items() if k != "heads"}
        for d, h in metrics["heads"].items():
            flat[f"eval/{d}/intensity_accuracy"] = h["intensity_accuracy"]
        log(flat, step)
        history.append({"step": step, **flat})
        value = metrics[config.metric_for_best_model]
        if value == value and _better(config.metric_for_best_model, value, best_metric):
            best_metric, best, best_step = value, metrics, step
            best_state = {n: p.detach().to("cpu", copy=True) for n, p in rm.named_parameters() if p.requires_grad}

    def loop_state(step: int) -> dict[str, Any]:
        state = {"step": step, "running": running, "seen": seen, "consumed": position.consumed}
        state.update(epoch_rng=generator_text(position.epoch_start), history=history, best=best)
        state.update(best_step=best_step, best_metric=best_metric)
        return {**state, **(checkpoint_extra() if checkpoint_extra is not None else {})}

    def write_best(directory: Path) -> None:
        if best_state is not None:
            save_file(best_state, directory / BEST_WEIGHTS)

    loop.model.train()
    step = loop.run(
        lambda _: itertools.islice(stream, config.gradient_accumulation_steps),
        batch_loss,
        start=start,
        log=log_loss,
        evaluate=evaluate,
        state=loop_state,
        write=write_best,
        protect=lambda: [best_step],
    )
    if best_state is not None:
        current = dict(rm.named_parameters())
        with torch.no_grad():
            for name, value in best_state.items():
                current[name].copy_(value.to(current[name].device))
    else:
        best_step = step
    training = {
        "dataset": source,
        "steps": step,
        "best_step": best_step,
        "metric_for_best_model": config.metric_for_best_model,
        "train_samples": len(train_set),
        "validation_samples": len(val_set),
        "seed": seed,
        "bf16": use_bf16,
        "peft": config.peft.model_dump() if config.peft else None,
        "bins": {d: b.model_dump() for d, b in bins.items()},
    }
    model_dir = rm.save(model_dir, extra={"training": training})
    if best and report_dir is not None:
        write_report({"samples": len(val_set), "step": best_step, "heads": best["heads"]}, report_dir)
    accelerator.free_memory()
    return TrainResult(
        model_dir=Path(model_dir),
        dimensions=dimensions,
        steps=step,
        best_step=best_step,
        best={k: v for k, v in best.items() if k != "heads"},
        train_samples=len(train_set),
        validation_samples=len(val_set),
        history=history,
    )
