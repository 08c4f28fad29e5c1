"""Final checkpoints: an HF-format directory (full model or LoRA adapter), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moalign.atomic import atomic_directory


def save_final_model(model: Any, tokenizer: Any, path: Path) -> Path:
    """Save ``model`` (a ``PreTrainedModel`` or a peft model: adapter only) and its tokenizer to ``path``.

    The directory appears only once complete, so a crash never leaves a checkpoint that looks whole.
    """
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path


def train_and_save(trainer: Any, tokenizer: Any, path: Path, *, validate: bool, **summary: Any) -> tuple[str, dict]:
    """Train a transformers/TRL trainer, save its final model to ``path`` and summarise the run.

    Returns the checkpoint directory and ``summary`` plus ``train_loss``, ``steps`` and, with
    ``validate``, the final ``eval_loss``.
    """
    output = trainer.train()
    saved = save_final_model(trainer.model, tokenizer, path)
    summary = {"train_loss": output.training_loss, "steps": output.global_step, **summary}
    if validate:
        summary["eval_loss"] = trainer.evaluate()["eval_loss"]
    return str(saved), summary
