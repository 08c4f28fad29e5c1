"""Training-data specs -> ``datasets.Dataset`` for the trainer-backed stages.

A stage's ``dataset`` key takes any of: ``builtin:NAME`` (:mod:`moalign.data.sources`); a local
``.json``/``.jsonl``/``.parquet``/``.csv`` file, with any columns; ``stage:TYPE/FILE``, a file written by the
latest earlier stage of that type in the same run (e.g. ``stage:best_of_n/pairs.jsonl``); a Hugging Face hub
dataset id; an adapter spec ``{adapter: NAME, path: ..., split: ...}`` or a list of them, read into the
project's standard records (:mod:`moalign.data.adapters`), whose own ``split`` wins over the stage's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from moalign.errors import UserError, exception_summary

if TYPE_CHECKING:
    from datasets import Dataset

    from moalign.data.adapters import DatasetSpec
    from moalign.tags import TagDimensions

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def names_local_file(spec: str) -> bool:
    """Whether a dataset spec (not ``builtin:`` or ``stage:``) names a local file rather than a hub dataset:
    it exists, or ends in a data file suffix (a missing file is then reported as such, not looked up on
    the hub)."""
    path = Path(spec).expanduser()
    return path.suffix in FILE_FORMATS or path.exists()


STAGE_PREFIX = "stage:"


class StageOutputs(Protocol):
    """A stage of a run, which resolves ``stage:TYPE/FILE`` references
    (:class:`moalign.stages.base.StageContext` is one)."""

    def stage_output(self, spec: str) -> Path:
        """The file ``spec`` names, written by the latest earlier stage of that type; a :class:`UserError` if none."""
        ...


class DataContext(StageOutputs, Protocol):
    """What loading a stage's datasets reads of the stage: its seed (the held-out split) and the recipe's
    tag dimensions (:class:`moalign.stages.base.StageContext` is one)."""

    @property
    def seed(self) -> int: ...

    @property
    def tag_dimensions(self) -> TagDimensions: ...


def stage_output(spec: str, ctx: StageOutputs | None) -> Path:
    """Resolve ``stage:TYPE/FILE`` to the file written by the latest earlier stage of that type."""
    if ctx is None:
        raise UserError(f"dataset '{spec}': 'stage:' references only work inside a recipe run")
    return ctx.stage_output(spec)


def resolve_stage_refs(value: Any, ctx: StageOutputs | None) -> Any:
    """``value`` with every ``stage:TYPE/FILE`` string (at any depth of dicts and lists) resolved to its path."""
    if isinstance(value, str) and value.startswith(STAGE_PREFIX):
        return str(stage_output(value, ctx))
    if isinstance(value, dict):
        return {k: resolve_stage_refs(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_stage_refs(v, ctx) for v in value]
    return value


def load_dataset_spec(spec: DatasetSpec, *, split: str = "train", ctx: DataContext | None = None) -> Dataset:
    """Load a dataset spec (``builtin:NAME``, a local file, ``stage:TYPE/FILE``, a hub id, or adapter spec(s))
    as a ``datasets.Dataset``."""
    from datasets import Dataset

    if not isinstance(spec, str):
        from moalign.data.adapters import load_adapted

        return load_adapted(spec, ctx.tag_dimensions if ctx else None)
    if spec.startswith("builtin:"):
        from moalign.data.sources import load_records

        return Dataset.from_list(load_records(spec, split))
    if spec.startswith(STAGE_PREFIX):
        return load_file(stage_output(spec, ctx))
    if names_local_file(spec):
        return load_file(Path(spec).expanduser())
    return load_hub(spec, split)


def load_file(path: Path) -> Dataset:
    from datasets import load_dataset

    if not path.exists():
        raise UserError("dataset file not found", source=str(path))
    fmt = FILE_FORMATS.get(path.suffix)
    if fmt is None:
        raise UserError(f"unsupported dataset format '{path.suffix}' (use {', '.join(FILE_FORMATS)})", source=str(path))
    if path.suffix == ".jsonl":
        from moalign.data.sources import jsonl_values

        # a bad line is reported by its number before datasets reads the file
        if not sum(1 for _ in jsonl_values(path)):
            raise UserError("no records: the file holds no JSON line", source=str(path))
    try:
        return load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for malformed files
        raise UserError(f"cannot read dataset: {exception_summary(exc)}", source=str(path)) from exc


def load_hub(spec: str, split: str) -> Dataset:
    from datasets import load_dataset

    try:
        return load_dataset(spec, split=split)
    except Exception as exc:
        raise UserError(
            f"cannot load hub dataset '{spec}' (split '{split}'): {exception_summary(exc)}. Offline machines "
            "need the dataset in the local Hugging Face cache or as a local file"
        ) from exc


def first(dataset: Dataset, n: int | None) -> Dataset:
    return dataset if n is None or n >= len(dataset) else dataset.select(range(n))


def record_chat(row: dict[str, Any], column: str, role: str, index: int, source: Any) -> list[dict[str, str]]:
    """``row[column]``, a text or a chat (a list of ``{role, content}`` texts), as a chat (a text becomes one
    ``role`` message); a :class:`UserError` naming record ``index`` of ``source`` if it is neither."""
    value = row[column]
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        return list(value)
    raise UserError(
        f"record {index}: '{column}' must be a text or a chat (a list of {{role, content}} texts), "
        f"got {type(value).__name__}",
        source=str(source),
    )


def require_prompt(value: Any, index: int, source: Any) -> None:
    """A :class:`UserError` naming record ``index`` of ``source`` if its prompt is missing or blank (a text,
    or a chat whose messages are all blank)."""
    if isinstance(value, str):
        texts: list[Any] = [value]
    else:
        texts = [m.get("content") for m in value if isinstance(m, dict)] if isinstance(value, list) else []
    if not any(isinstance(t, str) and t.strip() for t in texts):
        raise UserError(f"record {index}: empty prompt", source=str(source))


def require_prompts_fit(prompts: list[Any], tokenizer: Any, max_length: int | None, source: Any) -> None:
    """A :class:`UserError` naming the first prompt (chats) that, in the chat template with the assistant
    turn opened, leaves no token of ``max_length`` for its completion: a trainer would silently truncate
    the whole answer away."""
    if max_length is None or not prompts:
        return
    texts = tokenizer.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True)
    for i, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        if len(ids) >= max_length:
            raise UserError(
                f"record {i}: prompt is {len(ids)} tokens, max_length is {max_length}: no room for the completion",
                source=str(source),
            )


def message_text(item: Any, role: str | None) -> str:
    """The text of a prompt or completion: a string, or the last ``role`` message of a chat (TRL's
    conversational format; ``role=None`` takes the last message)."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and all(isinstance(m, Mapping) and "content" in m for m in item):
        messages = [m for m in item if role is None or m.get("role") == role]
        return str(messages[-1]["content"]) if messages else ""
    raise TypeError(f"expected a text or a list of chat messages, got {type(item).__name__}")


def require_tags(prompts: list[Any], dimensions: TagDimensions, source: Any) -> None:
    """A :class:`UserError` naming the first prompt (a text, or a chat's last user message) whose preference
    tags are malformed or outside the declared ``dimensions`` (:func:`moalign.tags.parse_tags`)."""
    from moalign.tags import TagError, parse_tags

    for i, prompt in enumerate(prompts):
        try:
            parse_tags(message_text(prompt, "user"), dimensions)
        except TagError as exc:
            raise UserError(f"record {i}: prompt tags: {exc}", source=str(source)) from None


def require_steps(rows: int, records_per_step: int, max_steps: int, epochs: float, source: Any) -> None:
    """A :class:`UserError` naming ``source`` if a stage would train nothing: ``rows`` records cannot fill
    one step of ``records_per_step``, or ``max_steps`` (or, when it is negative, ``epochs``) gives 0 steps."""
    if rows < records_per_step:
        raise UserError(
            f"{rows} record(s), but one training step takes {records_per_step}: the stage would train nothing",
            source=str(source),
        )
    if max_steps == 0 or (max_steps < 0 and epochs <= 0):
        raise UserError(
            f"{rows} record(s), but max_steps {max_steps} and num_train_epochs {epochs} give 0 training steps",
            source=str(source),
        )


def train_eval_datasets(
    config: Any, ctx: DataContext | None, normalise: Any, tag_dimensions: TagDimensions, records_per_step: int = 1
) -> tuple[Dataset, Dataset | None]:
    """The stage's training set and optional validation set, each mapped through ``normalise`` and checked
    whole before any model loads: prompt tags against ``tag_dimensions``, and enough training records for
    one step of ``records_per_step`` (:func:`require_steps`).

    ``config`` carries the shared keys ``dataset``, ``split``, ``eval_dataset``, ``validation_fraction``,
    ``num_samples``, ``max_steps`` and ``num_train_epochs``; validation comes from ``eval_dataset`` or a
    seeded held-out fraction.
    """
    train = first(load_dataset_spec(config.dataset, split=config.split, ctx=ctx), config.num_samples)
    train = normalise(train, config.dataset)
    require_tags(list(train["prompt"]), tag_dimensions, config.dataset)
    evaluation = None
    if config.eval_dataset:
        evaluation = normalise(load_dataset_spec(config.eval_dataset, split="validation", ctx=ctx), config.eval_dataset)
        require_tags(list(evaluation["prompt"]), tag_dimensions, config.eval_dataset)
    elif config.validation_fraction > 0:
        try:
            parts = train.train_test_split(test_size=config.validation_fraction, seed=ctx.seed if ctx else 0)
        except ValueError as exc:  # too few records to hold a share out
            fraction = config.validation_fraction
            message = f"{len(train)} records, validation_fraction {fraction}: {exception_summary(exc)}"
            raise UserError(message, source=config.dataset) from None
        train, evaluation = parts["train"], parts["test"]
    require_steps(len(train), records_per_step, config.max_steps, config.num_train_epochs, config.dataset)
    return train, evaluation
