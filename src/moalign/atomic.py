"""Crash-safe file writes: write to a temporary sibling, fsync, then rename over the target.

A reader therefore sees either the old complete file or the new complete file, never half of one.
A write the system refuses (a full disk, a read-only or foreign directory) is a :class:`UserError`
naming the file, and leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from moalign.errors import UserError

REFUSED_WRITES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
"""``errno`` values of a write the system refuses: the user can fix these (free space, permissions)."""


def write_refused(path: Path, exc: OSError) -> UserError:
    """The :class:`UserError` for a write the system refused (``ENOSPC``, ``EACCES``, ``EROFS``...)."""
    return UserError(f"cannot write: {exc.strerror or exc}", source=str(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_lines(path, [text])


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (joined as given, newlines included) one at a time, then rename: a large file is
    never held in memory whole."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_refused(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_refused(path, exc) from exc
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``path`` only if the block completes.

    An existing ``path`` is replaced. On error the temporary directory is removed; a write the system
    refused (:data:`REFUSED_WRITES`) becomes a :class:`UserError` naming the file and ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise write_refused(path, exc) from exc
    tmp.chmod(0o755)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in REFUSED_WRITES:
            name = Path(exc.filename).name if exc.filename else path.name
            raise UserError(f"cannot write {name}: {exc.strerror}", source=str(path)) from exc
        raise


def append_jsonl(path: str | Path, *records: dict[str, Any]) -> None:
    """Append one JSON line per record and fsync once. Readers skip a torn last line (see :func:`read_jsonl`)."""
    path = Path(path)
    data = "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)  # take the line back: the file ends with its last complete record
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_refused(path, exc) from exc


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by :func:`append_jsonl`, ignoring an incomplete final line."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn final write from a crash: not newline-terminated
                break
            raise
    return records
