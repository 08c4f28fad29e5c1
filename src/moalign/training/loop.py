"""The project's one accelerate optimisation loop, under the compact on-policy stages and the reward model.

A step is one or more micro-batches, each a forward and backward pass inside accelerate's gradient
accumulation (gradients clipped when they sync), then one learning-rate scheduler step. The loop says when
to log and to evaluate, and every ``save_steps`` writes a resumable checkpoint (accelerate's state, the
caller's files and JSON state). It knows nothing about the model or the data: the caller gives each
step's micro-batches and the loss of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from moalign.training.checkpoint import latest_complete_checkpoint, rotate_checkpoints, save_checkpoint

Loss = Callable[[Any], tuple[torch.Tensor, dict[str, float]]]
"""``loss(micro_batch) -> (scalar loss, metrics)``, called inside gradient accumulation (autocast is the caller's)."""


@dataclass(frozen=True)
class LoopSettings:
    """Optimiser, schedule and checkpoint settings (``transformers.TrainingArguments`` names)."""

    max_steps: int
    learning_rate: float
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this when the gradients sync (0: no clipping)."""
    logging_steps: int = 1
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    """Checkpoints kept: the newest N and the protected steps (None: all)."""
    checkpoint_dir: Path | None = None
    """Where checkpoints go and training resumes from (None: no checkpoints)."""


class TrainingLoop:
    """AdamW and a transformers learning-rate schedule over ``model``'s trainable parameters, prepared by
    ``accelerator``; :meth:`run` trains from a step to ``settings.max_steps``."""

    def __init__(self, accelerator: Any, model: torch.nn.Module, settings: LoopSettings) -> None:
        from transformers import get_scheduler

        self.accelerator = accelerator
        self.settings = settings
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        scheduler = get_scheduler(settings.lr_scheduler_type, optimizer, settings.warmup_steps, settings.max_steps)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next optimiser step."""
        return self.scheduler.get_last_lr()[0]

    def resume(self) -> Path | None:
        """Load accelerate's state from the latest complete checkpoint and return that checkpoint (the
        caller's state is :func:`~moalign.training.checkpoint.checkpoint_state` of it); None: none to resume."""
        directory = self.settings.checkpoint_dir
        latest = latest_complete_checkpoint(directory) if directory is not None else None
        if latest is not None:
            self.accelerator.load_state(str(latest))
        return latest

    def step(self, batches: Iterable[Any], loss: Loss) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimisation step over ``batches`` (the optimizer steps when accelerate syncs the gradients),
        then one scheduler step; returns the last micro-batch's loss and metrics."""
        accelerator = self.accelerator
        for batch in batches:
            with accelerator.accumulate(self.model):
                value, metrics = loss(batch)
                accelerator.backward(value)
                if accelerator.sync_gradients and self.settings.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.params, self.settings.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
        self.scheduler.step()
        return value, metrics

    def run(
        self,
        batches: Callable[[int], Iterable[Any]],
        loss: Loss,
        *,
        start: int = 0,
        log: Callable[[int, torch.Tensor, dict[str, float]], None],
        evaluate: Callable[[int], None] | None = None,
        stop: Callable[[int], bool] | None = None,
        state: Callable[[int], dict[str, Any]],
        write: Callable[[Path], None] | None = None,
        protect: Callable[[], Iterable[int]] = tuple,
        desc: str | None = None,
    ) -> int:
        """Train steps ``start + 1`` to ``max_steps`` (``batches(step)``: that step's micro-batches); return
        the last step trained.

        After each step: ``log(step, loss, metrics)`` (the last micro-batch's) every ``logging_steps`` and
        at the last step; ``evaluate(step)`` every ``eval_steps`` and at the last; ``stop(step)`` true ends
        training; then, every ``save_steps`` before the last, a checkpoint of accelerate's state, ``write``'s
        files and ``state(step)``, keeping the newest ``save_total_limit`` and ``protect()``'s steps.
        ``desc`` names a progress bar (None: none).
        """
        s = self.settings
        step = start
        for step in tqdm(range(start + 1, s.max_steps + 1), desc=desc, unit="step", disable=desc is None):
            value, metrics = self.step(batches(step), loss)
            last = step == s.max_steps
            if step % s.logging_steps == 0 or last:
                log(step, value, metrics)
            if evaluate is not None and (last or (s.eval_steps is not None and step % s.eval_steps == 0)):
                evaluate(step)
            if stop is not None and stop(step):
                break
            if s.checkpoint_dir is not None and s.save_steps is not None and step % s.save_steps == 0 and not last:
                self._save(step, state(step), write)
                rotate_checkpoints(s.checkpoint_dir, s.save_total_limit, protect=protect())
        return step

    def _save(self, step: int, state: dict[str, Any], write: Callable[[Path], None] | None) -> Path:
        """Write checkpoint ``step``: accelerate's state, ``write(directory)``'s files and ``state``."""
        assert self.settings.checkpoint_dir is not None

        def fill(tmp: Path) -> None:
            self.accelerator.save_state(str(tmp))
            if write is not None:
                write(tmp)

        return save_checkpoint(self.settings.checkpoint_dir, step, fill, state)
