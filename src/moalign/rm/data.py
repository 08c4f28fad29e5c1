"""Rated and paired records for the reward model, from JSONL files or any ``datasets`` source.

Every problem in a record is a :class:`UserError` naming the source, the line (JSONL) or row
(other sources) and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moalign.data.ratings import parse_rating
from moalign.errors import UserError
from moalign.rm.config import ColumnMap
from moalign.rm.labels import Bins

_MISSING = object()


@dataclass(frozen=True)
class RatedExample:
    """One (prompt, response) with an intensity (1-based) or None per dimension, in the model's order."""

    prompt: str
    response: str
    labels: dict[str, int | None]
    where: str


@dataclass(frozen=True)
class PairExample:
    prompt: str
    chosen: str
    rejected: str
    where: str


def _dig(row: Any, path: str) -> Any:
    """``row["a"]["b"]`` for ``path="a.b"`` (a whole key with dots wins over nesting); ``_MISSING`` if absent."""
    if isinstance(row, dict) and path in row:
        return row[path]
    current = row
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def iter_rows(source: str, *, split: str = "train", explode: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)``: ``file:line N`` for JSONL, ``source[split] row N`` otherwise.

    A local ``.jsonl`` file is read line by line; other local files (csv, json, parquet) and hub ids
    go through ``datasets.load_dataset``. With ``explode`` each element of that list column becomes
    its own row, the element replacing the list under the same key.
    """
    for where, row in _raw_rows(source, split):
        if explode is None:
            yield where, row
            continue
        items = _dig(row, explode)
        if items is _MISSING or not isinstance(items, list):
            raise UserError(f"{where}: key '{explode}' (columns.explode) is missing or not a list")
        for j, item in enumerate(items):
            yield f"{where} {explode}[{j}]", {**row, explode: item}


def _raw_rows(source: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    path = Path(source).expanduser()
    if path.suffix == ".jsonl" or (path.suffix == ".json" and path.is_file() and _looks_like_jsonl(path)):
        if not path.is_file():
            raise UserError(f"dataset file '{source}' does not exist")
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                yield f"{path}:{number}", row
        return
    dataset = _load_dataset(source, split)
    for number, row in enumerate(dataset):
        yield f"{source}[{split}] row {number}", row


def _looks_like_jsonl(path: Path) -> bool:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline().strip()
    return first.startswith("{") and first.endswith("}")


def _load_dataset(source: str, split: str) -> Any:
    import datasets

    path = Path(source).expanduser()
    builders = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".tsv": "csv"}
    try:
        if path.is_file() and path.suffix in builders:
            extra = {"delimiter": "\t"} if path.suffix == ".tsv" else {}
            return datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train", **extra)
        if path.suffix in builders:
            raise UserError(f"dataset file '{source}' does not exist")
        return datasets.load_dataset(source, split=split)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFoundError, ConnectionError, ValueError...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load dataset '{source}' (split '{split}'): {first}") from exc


def text_field(row: dict[str, Any], where: str, column: str, role: str) -> str:
    """The string at ``column`` of ``row``; a :class:`UserError` naming ``where`` and the key if absent."""
    value = _dig(row, column)
    if value is _MISSING:
        keys = ", ".join(sorted(row)) or "none"
        raise UserError(f"{where}: missing key '{column}' for the {role} (columns.{role}; keys here: {keys})")
    if not isinstance(value, str):
        raise UserError(f"{where}: key '{column}' ({role}) must be a string, got {type(value).__name__}")
    return value


def _ratings(row: dict[str, Any], where: str, columns: ColumnMap, dims: dict[str, Bins]) -> dict[str, Any]:
    """Dimension -> raw rating cell, from one mapping column or one column per dimension."""
    if isinstance(columns.ratings, dict):
        unknown = sorted(set(columns.ratings) - set(dims))
        if unknown:
            raise UserError(f"columns.ratings: unknown dimension(s) {', '.join(unknown)}; known: {', '.join(dims)}")
        out = {}
        for dim, column in columns.ratings.items():
            value = _dig(row, column)
            if value is _MISSING:
                raise UserError(f"{where}: missing key '{column}' for the rating of '{dim}' (columns.ratings.{dim})")
            out[dim] = value
        return out
    value = _dig(row, columns.ratings)
    if value is _MISSING:
        raise UserError(f"{where}: missing key '{columns.ratings}' for the ratings (columns.ratings)")
    if not isinstance(value, dict):
        raise UserError(f"{where}: key '{columns.ratings}' must map dimension -> rating, got {type(value).__name__}")
    unknown = sorted(set(value) - set(dims))
    if unknown:
        raise UserError(
            f"{where}: key '{columns.ratings}.{unknown[0]}': unknown dimension '{unknown[0]}'; "
            f"the model's dimensions are {', '.join(dims)} (add it to dimensions, or train on a subset by "
            f"mapping columns.ratings as {{dimension: '{columns.ratings}.dimension'}})"
        )
    return value


def rated_example(row: dict[str, Any], where: str, columns: ColumnMap, dims: dict[str, Bins]) -> RatedExample:
    """Validate one row and bin its ratings; dimensions absent from the row are unlabelled."""
    prompt = text_field(row, where, columns.prompt, "prompt")
    response = text_field(row, where, columns.response, "response")
    raw = _ratings(row, where, columns, dims)
    labels: dict[str, int | None] = {}
    for dim, bins in dims.items():
        key = columns.ratings[dim] if isinstance(columns.ratings, dict) else f"{columns.ratings}.{dim}"
        try:
            rating = parse_rating(raw.get(dim))
            labels[dim] = None if rating is None else bins(rating)
        except ValueError as exc:
            raise UserError(f"{where}: key '{key}': {exc}") from None
    return RatedExample(prompt=prompt, response=response, labels=labels, where=where)


def load_rated(
    source: str,
    dims: dict[str, Bins],
    columns: ColumnMap | None = None,
    *,
    split: str = "train",
    max_samples: int | None = None,
) -> list[RatedExample]:
    """Every rated example of ``source`` (rows with no label on any dimension are skipped)."""
    columns = columns or ColumnMap()
    out: list[RatedExample] = []
    for where, row in iter_rows(source, split=split, explode=columns.explode):
        example = rated_example(row, where, columns, dims)
        if any(v is not None for v in example.labels.values()):
            out.append(example)
        if max_samples is not None and len(out) >= max_samples:
            break
    if not out:
        raise UserError(f"dataset '{source}': no record has a rating for any of {', '.join(dims)}")
    return out


def load_pairs(
    source: str, columns: ColumnMap | None = None, *, split: str = "train", max_samples: int | None = None
) -> list[PairExample]:
    """(prompt, chosen, rejected) triples; chat-style message lists are reduced to the last message's text."""
    columns = columns or ColumnMap()
    out: list[PairExample] = []
    for where, row in iter_rows(source, split=split, explode=columns.explode):
        prompt = text_field(row, where, columns.prompt, "prompt")
        chosen = _message_text(row, where, columns.chosen, "chosen")
        rejected = _message_text(row, where, columns.rejected, "rejected")
        out.append(PairExample(prompt=prompt, chosen=chosen, rejected=rejected, where=where))
        if max_samples is not None and len(out) >= max_samples:
            break
    if not out:
        raise UserError(f"dataset '{source}' has no records")
    return out


def _message_text(row: dict[str, Any], where: str, column: str, role: str) -> str:
    value = _dig(row, column)
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])  # e.g. ultrafeedback_binarized: [{role, content}, ...]
    return text_field(row, where, column, role)
