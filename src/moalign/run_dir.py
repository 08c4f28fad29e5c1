"""The run directory ``runs/NAME/``: resolved config, metrics, stage outputs and the summary.

One process at a time writes into a run directory: it holds an exclusive ``flock`` on ``run.lock``
for the whole run. The kernel releases the lock when the process ends, however it ends, so the lock
file a killed run leaves behind blocks nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moalign.atomic import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from moalign.errors import UserError
from moalign.processes import is_main_process

LOCK_FILE = "run.lock"
SWEEP_FILE = "sweep.json"
"""A sweep's run directory: its weight vectors and where each one's run lies (:mod:`moalign.sweep`)."""


class RunDir:
    """Paths and writers for one run. Every file is written atomically; metrics are JSONL."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()

    @classmethod
    def existing(cls, root: str | Path) -> RunDir:
        """An existing run directory (one with its ``config.resolved.yaml``); a :class:`UserError` otherwise."""
        path = Path(root)
        if not (path / "config.resolved.yaml").is_file():
            raise UserError(f"'{path}' is not a run directory (no config.resolved.yaml)")
        return cls(path)

    @property
    def config_path(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory's lock; a :class:`UserError` naming the holder's pid if another process has it.

        The other processes of an ``accelerate launch`` share the main process's lock (:mod:`moalign.processes`).
        """
        if not is_main_process():
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise UserError(
                    f"run directory '{self.root}' is in use by process {holder} (lock: {self.lock_path}); "
                    "wait for it to finish or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the flock

    def is_empty(self) -> bool:
        """Nothing in the directory but its lock file."""
        return all(p.name == LOCK_FILE for p in self.root.iterdir())

    def clear(self) -> None:
        """Delete everything in the directory except its lock file (``--overwrite``, lock held)."""
        for path in self.root.iterdir():
            if path.name == LOCK_FILE:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def stage_name(self, index: int, stage_type: str) -> str:
        return f"{index:02d}-{stage_type}"

    def stage_record(self, index: int, stage_type: str) -> dict[str, Any] | None:
        """The completion record ``stage.json`` of a finished stage; None while the stage is unfinished."""
        path = self.root / self.stage_name(index, stage_type) / "stage.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def stage_dir(self, index: int, stage_type: str) -> Path:
        path = self.root / f"{index:02d}-{stage_type}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def portable(self, model: str | None) -> str | None:
        """``model`` as the run's records keep it: a path inside the run directory relative to it (so a copied
        or moved run still finds its stages' models), anything else unchanged."""
        if model is None or not Path(model).exists():
            return model
        path, root = Path(model).resolve(), self.root.resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else model

    def model_spec(self, recorded: str | None) -> str | None:
        """The loadable spec of a model a record names (:meth:`portable`'s inverse)."""
        if recorded is None or Path(recorded).is_absolute() or not (self.root / recorded).exists():
            return recorded
        return str(self.root / recorded)

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.config_path, yaml_text)

    def log_metrics(self, metrics: dict[str, Any], *, stage: str, step: int | None = None) -> None:
        if not is_main_process():
            return
        record: dict[str, Any] = {"stage": stage, "step": step, "time": round(time.time() - self._t0, 3)}
        record.update(metrics)
        append_jsonl(self.metrics_path, record)

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def metrics_size(self) -> int:
        """Bytes written to ``metrics.jsonl`` so far (a checkpoint records it for :meth:`rewind_metrics`)."""
        return self.metrics_path.stat().st_size if self.metrics_path.exists() else 0

    def rewind_metrics(self, stage: str, size: int | None) -> None:
        """Drop what ``stage`` logged after ``metrics.jsonl`` had ``size`` bytes (None: all it logged), and a
        torn final line. A resumed stage repeats what came after its checkpoint, logging included.
        """
        kept, offset = [], 0
        for line in self.metrics_path.read_bytes().splitlines(keepends=True) if self.metrics_path.exists() else []:
            offset += len(line)
            if not line.endswith(b"\n"):
                break  # torn by a kill
            record = json.loads(line)
            if record.get("stage") != stage or (size is not None and offset <= size):
                kept.append(line)
        atomic_write_text(self.metrics_path, b"".join(kept).decode("utf-8"))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)
