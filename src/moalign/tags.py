"""Preference tags (MOSLIM, seed 002): ``<helpfulness 4> <harmless max> prompt``.

A tag names a declared dimension and an intensity (an integer in its range, or ``max``); tags form a prefix.
:func:`parse_tags` splits them off (scorers see the prompt without them, seed 002's "prompt alignment"),
:func:`format_tags` writes them back; :func:`tag_records` / :func:`tag_dataset` sample 1-3 dimensions with
random intensities per prompt (seed 002, 3.2) and carry them as ``tag_<dimension>`` columns.
Reading taken: seed 002 samples harmlessness tags in 0-1 (section 3.2) but classifies it 1-2 (table 5);
a tag selects a reward-model class, so the default ``harmless`` range is 1-2.

Reading notes: docs/papers.md#tagspy.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from moalign.errors import UserError
from moalign.registry import did_you_mean

MAX = "max"
TAG_COLUMN_PREFIX = "tag_"
DIMENSION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class IntensityRange(NamedTuple):
    """The inclusive range of intensities a dimension accepts."""

    low: int
    high: int


TagDimensions = Mapping[str, IntensityRange | tuple[int, int]]

DEFAULT_TAG_DIMENSIONS: dict[str, IntensityRange] = {
    "helpfulness": IntensityRange(1, 5),
    "honesty": IntensityRange(1, 5),
    "harmless": IntensityRange(1, 2),
    "brevity": IntensityRange(1, 5),
    "structure": IntensityRange(1, 5),
}
"""Seed 002's three dimensions (helpfulness and honesty 1-5; harmless 1-2, its reward-model classes in table 5)
and the built-in task suite's two controllable ones (brevity and structure 1-5, :mod:`moalign.data.dimensions`)."""


class TagError(UserError):
    """A malformed preference tag (unknown dimension, intensity out of range, unclosed bracket)."""


def check_dimensions(dimensions: TagDimensions) -> dict[str, IntensityRange]:
    """Validated ``{name: IntensityRange}``; raises ``ValueError`` for bad names or empty ranges."""
    out: dict[str, IntensityRange] = {}
    for name, rng in dimensions.items():
        if not DIMENSION_NAME.match(name) or name == MAX:
            raise ValueError(f"tag dimension name '{name}' must be an identifier (letters, digits, _ and -)")
        low, high = (int(v) for v in rng)
        if low > high:
            raise ValueError(f"tag dimension '{name}': empty intensity range [{low}, {high}]")
        out[name] = IntensityRange(low, high)
    return out


def tag_column(dimension: str) -> str:
    """The dataset column that carries a prompt's intensity for ``dimension`` (None if untagged)."""
    return TAG_COLUMN_PREFIX + dimension


# ``<`` then an identifier: either a tag or ordinary text such as ``<div>``; decided by _read_tag.
_TAG_START = re.compile(r"<\s*([A-Za-z_][A-Za-z0-9_-]*)")
_INTENSITY = re.compile(r"\s+(-?\d+|max)\b")
_CLOSE = re.compile(r"\s*>")


def _resolve(name: str, raw: str, dims: Mapping[str, IntensityRange]) -> int:
    low, high = dims[name]
    if raw == MAX:
        return high
    value = int(raw)
    if not low <= value <= high:
        raise TagError(f"tag <{name} {raw}>: intensity {value} is outside [{low}, {high}] (or use 'max')")
    return value


def strip_tags(text: str) -> str:
    """``text`` without its leading preference tags, whatever their dimensions and intensities:
    ``"<helpfulness 4> <harmless max>  Hi <b 2>"`` -> ``"Hi <b 2>"``.

    The grammar is :func:`parse_tags`' (``<name intensity>``, an integer or ``max``), but nothing is
    checked: a reward model must not fail on, or read, tags for dimensions it has no head for.
    """
    pos = len(text) - len(text.lstrip())
    end = 0
    while (start := _TAG_START.match(text, pos)) and (intensity := _INTENSITY.match(text, start.end())):
        close = _CLOSE.match(text, intensity.end())
        if close is None:
            break
        pos = close.end() + len(text[close.end() :]) - len(text[close.end() :].lstrip())
        end = pos
    return text[end:]


def parse_tags(text: str, dimensions: TagDimensions | None = None) -> tuple[str, dict[str, int]]:
    """Split leading preference tags off ``text``: ``(text without tags, {dimension: intensity})``.

    Only a prefix of tags is read (``<helpfulness 4><honesty max> Explain ...``); whitespace between
    and after tags is dropped. ``max`` resolves to the top of the dimension's range. A leading
    ``<word`` that is neither a declared dimension nor followed by an intensity is ordinary text
    (``<div>``), so parsing stops there. Errors: unknown dimension, intensity missing or out of
    range, unclosed bracket, the same dimension twice.
    """
    dims = DEFAULT_TAG_DIMENSIONS if dimensions is None else check_dimensions(dimensions)
    tags: dict[str, int] = {}
    pos = len(text) - len(text.lstrip())
    end = 0  # where the text after the last tag starts (0: no tags, text unchanged)
    while True:
        start = _TAG_START.match(text, pos)
        if start is None:
            break
        name = start.group(1)
        intensity = _INTENSITY.match(text, start.end())
        if name not in dims and intensity is None:
            break  # ordinary text that starts with '<'
        shown = text[pos : (intensity.end() if intensity else start.end())]
        if name not in dims:
            known = ", ".join(dims) or "none"
            raise TagError(f"tag '{shown}': unknown dimension '{name}'{did_you_mean(name, list(dims))}; known: {known}")
        if intensity is None:
            low, high = dims[name]
            raise TagError(f"tag '{shown}': expected an intensity in [{low}, {high}] or 'max' after '{name}'")
        close = _CLOSE.match(text, intensity.end())
        if close is None:
            raise TagError(f"tag '{shown}': unclosed bracket (expected '>')")
        if name in tags:
            raise TagError(f"tag '{shown}': dimension '{name}' is tagged twice")
        tags[name] = _resolve(name, intensity.group(1), dims)
        pos = close.end()
        pos += len(text[pos:]) - len(text[pos:].lstrip())
        end = pos
    return text[end:], tags


def format_tags(tags: Mapping[str, int | str], text: str = "", dimensions: TagDimensions | None = None) -> str:
    """``<dim intensity> ... text``: the inverse of :func:`parse_tags`.

    ``parse_tags(format_tags(tags, text)) == (text, tags)`` for any ``text`` that does not itself
    start with whitespace or a tag. Intensities are checked against ``dimensions`` when given.
    """
    dims = None if dimensions is None else check_dimensions(dimensions)
    parts = []
    for name, value in tags.items():
        if not DIMENSION_NAME.match(name):
            raise TagError(f"cannot format a tag for dimension '{name}': not an identifier")
        if dims is not None:
            if name not in dims:
                raise TagError(f"unknown tag dimension '{name}'{did_you_mean(name, list(dims))}")
            _resolve(name, str(value), dims)
        elif value != MAX and not isinstance(value, int):
            raise TagError(f"tag intensity for '{name}' must be an int or 'max', got {value!r}")
        parts.append(f"<{name} {value}>")
    return " ".join([*parts, text]) if text else " ".join(parts)


def sample_tags(rng: random.Random, dimensions: TagDimensions, min_dims: int = 1, max_dims: int = 3) -> dict[str, int]:
    """Between ``min_dims`` and ``max_dims`` distinct dimensions with uniform random intensities."""
    dims = check_dimensions(dimensions)
    if not 1 <= min_dims <= max_dims:
        raise ValueError(f"need 1 <= min_dims <= max_dims, got {min_dims}, {max_dims}")
    names = list(dims)
    count = rng.randint(min(min_dims, len(names)), min(max_dims, len(names)))
    chosen = rng.sample(names, count)
    return {name: rng.randint(*dims[name]) for name in chosen}


def tag_record(
    record: Mapping[str, Any],
    index: int,
    dimensions: TagDimensions,
    *,
    seed: int = 0,
    min_dims: int = 1,
    max_dims: int = 3,
    prompt_column: str = "prompt",
) -> dict[str, Any]:
    """One record with its prompt tagged and ``tag_<dimension>`` columns added.

    The random draw depends only on ``(seed, index)``, so the result does not depend on batching,
    worker count or order. A prompt that already carries tags keeps them.
    """
    dims = check_dimensions(dimensions)
    prompt = record[prompt_column]
    if not isinstance(prompt, str):
        raise UserError(f"record {index}: tagging needs a text prompt in column '{prompt_column}'")
    text, tags = parse_tags(prompt, dims)
    if not tags:
        tags = sample_tags(random.Random(f"{seed}:{index}"), dims, min_dims, max_dims)
    out = dict(record)
    out[prompt_column] = format_tags(tags, text)
    for name in dims:
        out[tag_column(name)] = tags.get(name)
    return out


def tag_records(
    records: Iterable[Mapping[str, Any]],
    dimensions: TagDimensions | None = None,
    *,
    seed: int = 0,
    min_dims: int = 1,
    max_dims: int = 3,
    prompt_column: str = "prompt",
) -> list[dict[str, Any]]:
    """Tag every record's prompt (see :func:`tag_record`); dimensions default to seed 002's."""
    dims = DEFAULT_TAG_DIMENSIONS if dimensions is None else dimensions
    return [
        tag_record(r, i, dims, seed=seed, min_dims=min_dims, max_dims=max_dims, prompt_column=prompt_column)
        for i, r in enumerate(records)
    ]


def tag_dataset(
    dataset: Any,
    dimensions: TagDimensions | None = None,
    *,
    seed: int = 0,
    min_dims: int = 1,
    max_dims: int = 3,
    prompt_column: str = "prompt",
) -> Any:
    """A Hugging Face ``datasets.Dataset`` with tagged prompts and ``tag_<dimension>`` columns."""
    dims = DEFAULT_TAG_DIMENSIONS if dimensions is None else dimensions
    return dataset.map(
        tag_record,
        with_indices=True,
        fn_kwargs={
            "dimensions": dict(dims),
            "seed": seed,
            "min_dims": min_dims,
            "max_dims": max_dims,
            "prompt_column": prompt_column,
        },
        desc="tagging prompts",
    )


def tags_from_columns(
    columns: Mapping[str, Sequence[Any]], dimensions: Iterable[str], size: int
) -> list[dict[str, int]]:
    """Per-sample tags read back from ``tag_<dimension>`` columns (missing columns and None skip)."""
    out: list[dict[str, int]] = [{} for _ in range(size)]
    for name in dimensions:
        values = columns.get(tag_column(name))
        if values is None:
            continue
        for i, value in enumerate(values):
            if value is not None:
                out[i][name] = int(value)
    return out
