"""transformers ``TrainerCallback``s that connect TRL trainers to the run directory."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from moalign.cost import count_tokens
from moalign.run_dir import RunDir
from moalign.training.context import TrainingStage


class MetricsCallback(TrainerCallback):
    """Write every trainer log (``loss``, ``rewards/margins``, ``eval_loss``...) to metrics.jsonl.

    Keys are prefixed like the rest of moalign: ``loss`` -> ``train/loss``, ``eval_loss`` -> ``eval/loss``.
    ``derive(logs)`` may add metrics computed from the trainer's own (e.g. DPO's ``kl``).
    """

    def __init__(self, log: Any, derive: Callable[[dict[str, Any]], dict[str, float]] | None = None) -> None:
        self._log = log
        self._derive = derive

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs:
            return
        out: dict[str, Any] = {}
        for key, value in logs.items():
            if not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
                continue
            if key.startswith("eval_"):
                out[f"eval/{key[5:]}"] = value
            elif "/" in key:
                out[key] = value
            else:
                out[f"train/{key}"] = value
        if self._derive is not None:
            out.update(self._derive(logs))
        if out:
            self._log(out, step=state.global_step)


class TokenCountCallback(TrainerCallback):
    """Add the trainer's ``num_input_tokens_seen`` to the stage's trained tokens (:mod:`moalign.cost`)."""

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        count_tokens(trained=state.num_input_tokens_seen or 0)


class CheckpointMarker(TrainerCallback):
    """Write the completeness marker into each checkpoint once the Trainer has finished saving it.

    The marker records how far ``metrics.jsonl`` had been written (a resume drops what came after)
    and ``state()``: what the project keeps beside the Trainer's own state (e.g. the reward's
    normaliser statistics); :func:`moalign.training.checkpoint.train_resuming` hands it back on resume.
    """

    def __init__(self, run: RunDir, state: Callable[[], dict[str, Any]] | None = None) -> None:
        self._run = run
        self._state = state

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from moalign.processes import wait_for_everyone
        from moalign.training.checkpoint import CHECKPOINT_PREFIX, write_marker

        wait_for_everyone()  # under accelerate launch each process saves its own RNG state: all are written
        if args.should_save:
            path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            extra = self._state() if self._state is not None else {}
            write_marker(path, state.global_step, {"metrics_bytes": self._run.metrics_size(), **extra})


def trainer_callbacks(
    ctx: TrainingStage,
    config: Any,
    has_eval: bool,
    derive: Callable[[dict[str, Any]], dict[str, float]] | None = None,
    state: Callable[[], dict[str, Any]] | None = None,
) -> list[Any]:
    """The callbacks every trainer-backed stage attaches: metrics.jsonl, token counts, checkpoint markers
    (recording ``state()`` in each), early stopping when asked."""
    from transformers import EarlyStoppingCallback

    callbacks: list[Any] = [MetricsCallback(ctx.log, derive), TokenCountCallback(), CheckpointMarker(ctx.run, state)]
    if has_eval and config.eval_steps is not None and config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    return callbacks
