"""Dataset specs -> standard prompt records.

A spec is ``builtin:ifeval-lite`` / ``builtin:ifeval-lite-tagged`` (optionally ``?seed=N``; topic-disjoint
splits ``train``, ``validation``, ``test``), a local ``.jsonl`` file or a directory of ``SPLIT.jsonl`` files.
A standard record has ``prompt`` and optionally ``id``, ``constraints`` and ``tag_brevity`` / ``tag_structure``;
records are validated on load, and a malformed one raises :class:`UserError` naming its file and line.

Notes: docs/papers.md#datasourcespy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from moalign.data.constraints import parse_constraints
from moalign.data.dimensions import DIMENSIONS, requested_intensity
from moalign.data.prompts import SPLITS, Variant, generate_prompts
from moalign.errors import UserError, decode_utf8
from moalign.registry import did_you_mean
from moalign.tags import TagError, parse_tags, tag_column

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinDataset:
    """A built-in prompt set: its generator variant and the size of each split."""

    name: str
    variant: Variant
    description: str
    sizes: tuple[tuple[str, int], ...] = (("train", 5000), ("validation", 500), ("test", 500))

    def size(self, split: str) -> int:
        return dict(self.sizes)[split]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset("ifeval-lite", "constraints", "instruction following with 1-3 verifiable constraints"),
        BuiltinDataset(
            "ifeval-lite-tagged", "tagged", "<brevity n><structure m> tagged prompts, at most one content constraint"
        ),
    )
}


def parse_builtin_spec(spec: str) -> tuple[BuiltinDataset, int]:
    """``builtin:NAME[?seed=N]`` -> (dataset, seed). Unknown names and options are :class:`UserError`."""
    body = spec[len(BUILTIN_PREFIX) :]
    name, _, query = body.partition("?")
    if name not in BUILTIN_DATASETS:
        known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATASETS)
        hint = did_you_mean(name, list(BUILTIN_DATASETS))
        raise UserError(f"unknown built-in dataset '{name}'{hint}; known: {known}", source=spec)
    seed = 0
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []:
        if key != "seed":
            raise UserError(f"unknown dataset option '{key}'{did_you_mean(key, ['seed'])}; known: seed", source=spec)
        try:
            seed = int(value)
        except ValueError:
            raise UserError(f"seed must be an integer, got {value!r}", source=spec) from None
    return BUILTIN_DATASETS[name], seed


def load_records(spec: str, split: str = "train", *, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of ``split`` of the dataset ``spec`` (at most ``limit``, always the same prefix)."""
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    if spec.startswith(BUILTIN_PREFIX):
        dataset, seed = parse_builtin_spec(spec)
        if split not in SPLITS:
            raise UserError(
                f"unknown split '{split}'{did_you_mean(split, SPLITS)}; known: {', '.join(SPLITS)}", source=spec
            )
        size = dataset.size(split)
        return generate_prompts(split, size if limit is None else min(limit, size), seed=seed, variant=dataset.variant)
    path = Path(spec)
    if path.is_dir():
        path = path / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"no file for split '{split}' ({path.name} not found)", source=spec)
    elif not path.is_file():
        known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATASETS)
        raise UserError(f"dataset not found: not a file, a directory or a built-in ({known})", source=spec)
    return read_record_file(path, limit=limit)


def jsonl_values(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of every non-blank line of a JSONL file, read one line at a time;
    a line that is not UTF-8 or not JSON is a :class:`UserError` naming ``file:line``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = decode_utf8(raw, str(path), first_line=lineno)
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"not valid JSON: {exc.msg} (column {exc.colno})", source=f"{path}:{lineno}") from None
            yield lineno, value


def read_record_file(path: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Read and validate a JSONL file of prompt records."""
    records: list[dict[str, Any]] = []
    for lineno, raw in jsonl_values(path):
        if limit is not None and len(records) >= limit:
            break
        records.append(validate_record(raw, source=f"{path}:{lineno}"))
    return records


def validate_record(raw: Any, *, source: str) -> dict[str, Any]:
    """A checked prompt record (constraints and tags normalised); :class:`UserError` naming ``source`` if bad."""
    if not isinstance(raw, Mapping):
        raise UserError(f"a record must be a JSON object, got {type(raw).__name__}", source=source)
    record = dict(raw)
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("a record needs a non-empty 'prompt' string", source=source)
    record["constraints"] = parse_constraints(record.get("constraints"), source=f"{source}: constraints")
    tags = record.get("tags")
    if tags is not None and not isinstance(tags, Mapping | str):
        raise UserError(f"'tags' must be a mapping or a tag string, got {tags!r}", source=source)
    try:
        lookup = record if "tags" in record else {**record, "tags": parse_tags(prompt)[1]}
    except TagError as exc:
        raise UserError(f"prompt tags: {exc}", source=source) from None
    try:
        record.update({tag_column(name): requested_intensity(name, lookup) for name in sorted(DIMENSIONS)})
    except ValueError as exc:
        raise UserError(f"tags: {exc}", source=source) from None
    return record


def as_dataset(records: list[dict[str, Any]]) -> Any:
    """Records as a ``datasets.Dataset`` (constraint dicts gain None for other kinds' keys; see
    :func:`moalign.data.constraints.parse_constraints`, which drops them again)."""
    from datasets import Dataset

    return Dataset.from_list(records)
