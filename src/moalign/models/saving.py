"""A final model written atomically: the directory appears only once it is complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moalign.atomic import atomic_directory
from moalign.processes import is_main_process


def save_final_model(model: Any, tokenizer: Any, path: Path) -> Path:
    """Save ``model`` (a ``PreTrainedModel`` or a peft model: adapter only) and its tokenizer to ``path``.

    The directory appears only once complete, so a crash never leaves a checkpoint that looks whole.
    Under ``accelerate launch`` only the main process writes (the weights are the same on every rank).
    """
    if not is_main_process():
        return path
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path
