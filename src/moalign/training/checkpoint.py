"""Checkpoints: a trainer's final model (:func:`moalign.models.saving.save_final_model`) and resumable
training checkpoints.

A training checkpoint ``<stage>/checkpoints/checkpoint-<step>`` holds what its trainer saves and, written last,
the completeness marker ``checkpoint.json`` (the step, every file's size, the loop's own state). The project's
loop renames a temporary directory once the marker is in; transformers' Trainer gets the marker from
:class:`moalign.training.callbacks.CheckpointMarker` after it has finished a checkpoint. A directory without a
valid marker, with a file of another size or a truncated safetensors file is incomplete: it is reported and
the previous checkpoint is used.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_directory, atomic_write_json
from moalign.models.saving import save_final_model
from moalign.processes import is_main_process, wait_for_everyone, world_size

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
"""transformers' ``PREFIX_CHECKPOINT_DIR`` plus its dash: both kinds of checkpoint share the naming."""
MARKER = "checkpoint.json"
_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def save_trainer_model(trainer: Any, tokenizer: Any, path: Path) -> Path:
    """The final model of a transformers/TRL trainer, as :func:`save_final_model`; under ``accelerate launch``
    through the trainer's own ``save_model``, which every process calls: it gathers FSDP and ZeRO-3
    shards and writes on the main process."""
    if world_size() == 1:
        return save_final_model(trainer.model, tokenizer, path)
    trainer.save_model(str(path))
    if trainer.args.should_save:
        tokenizer.save_pretrained(path)
    return path


def checkpoint_step(path: Path) -> int | None:
    """The step in a ``checkpoint-<step>`` directory name; None for any other name."""
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: Path) -> list[Path]:
    """``checkpoint-<step>`` directories under ``directory``, oldest step first (complete or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def _files(path: Path) -> dict[str, int]:
    """``{relative path: size}`` of every file under ``path`` except the marker."""
    return {
        f.relative_to(path).as_posix(): f.stat().st_size
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.relative_to(path).as_posix() != MARKER
    }


def write_marker(path: Path, step: int, state: dict[str, Any] | None = None) -> None:
    """Mark the checkpoint in ``path`` complete: fsync its files, then write the marker atomically.

    ``state`` is the loop's own JSON-serialisable state (read back by :func:`checkpoint_state`).
    """
    path = Path(path)
    files = _files(path)
    for name in files:
        fd = os.open(path / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    atomic_write_json(path / MARKER, {"step": step, "files": files, "state": state or {}})


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` is not whole (header unreadable, data shorter than declared); None if whole.

    Layout: an 8-byte little-endian header length N, N bytes of JSON, then the tensor data, whose
    extent is the largest ``data_offsets`` end in the header.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{path.name}: {size} bytes, shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            return f"{path.name}: header of {n} bytes runs past the end of the file ({size} bytes)"
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path.name}: unreadable header"
    ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{path.name}: {size} bytes, the header declares {expected}"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint in ``path`` cannot be resumed from; None when it is complete."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} (written last, so the checkpoint was never finished)"
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        expected: dict[str, int] = record["files"]
        int(record["step"])
    except (ValueError, KeyError, TypeError):
        return f"unreadable {MARKER}"
    actual = _files(path)
    for name, size in expected.items():
        if name not in actual:
            return f"{name} is missing"
        if actual[name] != size:
            return f"{name} has {actual[name]} bytes, {MARKER} records {size}"
    for name in expected:
        if name.endswith(".safetensors"):
            problem = safetensors_problem(path / name)
            if problem is not None:
                return problem
    return None


def latest_complete_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint under ``directory``; each newer incomplete one is logged and skipped."""
    for path in reversed(list_checkpoints(directory)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("skipping incomplete checkpoint %s: %s", path, problem)
    return None


def checkpoint_state(path: Path) -> dict[str, Any]:
    """The loop state recorded in a complete checkpoint's marker (``{}`` if none was given)."""
    return json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))["state"]


def discard_incomplete(directory: Path) -> list[Path]:
    """Delete the checkpoints under ``directory`` newer than the latest complete one, and leftover temporary
    directories of an interrupted save; return what was deleted (each is logged)."""
    directory = Path(directory)
    latest = latest_complete_checkpoint(directory)
    newest = checkpoint_step(latest) if latest is not None else -1
    doomed = [p for p in list_checkpoints(directory) if (checkpoint_step(p) or 0) > newest]
    if directory.is_dir():
        doomed += [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(f".{CHECKPOINT_PREFIX}")]
    for path in doomed:
        logger.warning("removing incomplete checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def checkpoints_to_remove(steps: Iterable[int], keep_last: int, protect: Iterable[int] = ()) -> list[int]:
    """Steps to delete so that the newest ``keep_last`` (at least 1) and every ``protect``-ed step remain."""
    ordered = sorted(steps)
    kept = set(ordered[-max(keep_last, 1) :]) | set(protect)
    return [s for s in ordered if s not in kept]


def rotate_checkpoints(directory: Path, keep_last: int | None, protect: Iterable[int] = ()) -> None:
    """Delete old complete checkpoints beyond the newest ``keep_last`` (None: keep all) and ``protect``
    (on the main process of a launch only)."""
    if keep_last is None or not is_main_process():
        return
    by_step = {checkpoint_step(p): p for p in list_checkpoints(directory)}
    for step in checkpoints_to_remove([s for s in by_step if s is not None], keep_last, protect):
        shutil.rmtree(by_step[step], ignore_errors=True)


def generator_text(state: Any) -> str:
    """A ``torch.Generator`` state (``get_state()``, a uint8 tensor) as JSON-safe text."""
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def generator_from_text(text: str) -> Any:
    """The generator state :func:`generator_text` wrote, for ``torch.Generator.set_state``."""
    import torch

    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def save_checkpoint(directory: Path, step: int, write: Callable[[Path], None], state: dict[str, Any]) -> Path:
    """Write ``directory/checkpoint-<step>`` atomically: ``write(tmp)`` fills a temporary directory, the
    marker goes in last, and the directory is renamed into place only then.

    Under ``accelerate launch`` every process calls this (accelerate's ``save_state`` writes per-process
    RNG files): all write into one hidden staging directory, then the main process marks and renames it.
    """
    path = Path(directory) / f"{CHECKPOINT_PREFIX}{step}"
    if world_size() == 1:
        with atomic_directory(path) as tmp:
            write(tmp)
            write_marker(tmp, step, state)
        return path
    staging = path.with_name(f".{path.name}.staging")  # removed by discard_incomplete if a kill leaves it
    if is_main_process():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    wait_for_everyone()
    write(staging)
    wait_for_everyone()
    if is_main_process():
        write_marker(staging, step, state)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    wait_for_everyone()
    return path


def train_and_save(trainer: Any, tokenizer: Any, path: Path, *, validate: bool, **summary: Any) -> tuple[str, dict]:
    """Train a transformers/TRL trainer (from its latest complete checkpoint, if any), save its final model
    to ``path`` and summarise the run.

    Returns the checkpoint directory and ``summary`` plus ``train_loss``, ``steps`` and, with
    ``validate``, the final ``eval_loss``.
    """
    output = train_resuming(trainer)
    saved = save_trainer_model(trainer, tokenizer, path)
    summary = {"train_loss": output.training_loss, "steps": output.global_step, **summary}
    if validate:
        summary["eval_loss"] = trainer.evaluate()["eval_loss"]
    return str(saved), summary


def train_resuming(trainer: Any, restore: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """``trainer.train()``, resumed from the latest complete checkpoint in its ``output_dir`` when there is one.

    ``restore(state)`` receives the state the :class:`~moalign.training.callbacks.CheckpointMarker`
    recorded (e.g. the reward's normaliser statistics) before training continues.
    """
    latest = latest_complete_checkpoint(Path(trainer.args.output_dir))
    if latest is not None and restore is not None:
        restore(checkpoint_state(latest))
    return trainer.train(resume_from_checkpoint=str(latest) if latest is not None else None)
