"""Property tests: whatever a data file or a recipe holds, loading and validating it gives a valid result or a
:class:`UserError` naming the file, never another exception.

The inputs are random bytes, truncated JSON lines, empty and whitespace-only files, records whose columns have
the wrong types, very long lines and random recipe mappings. Seeded (``derandomize``) with a bounded number
of examples, so they run in seconds and fail the same way on every machine.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moalign.data.sources import read_record_file
from moalign.data.specs import train_eval_datasets
from moalign.errors import UserError
from moalign.recipe import load_recipe
from moalign.stages.dpo import DPOStageConfig, preference_records
from moalign.stages.grpo import GRPOStageConfig
from moalign.stages.sft import SFTStageConfig, sft_records
from moalign.tags import DEFAULT_TAG_DIMENSIONS
from moalign.training.online import OnlineStageConfig, online_prompt_records
from moalign.training.trl_online import prompt_records, prompts_per_step

SETTINGS = settings(
    derandomize=True, max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def sft_check(path: Path) -> Any:
    return train_eval_datasets(SFTStageConfig(dataset=str(path)), None, sft_records, DEFAULT_TAG_DIMENSIONS)


def dpo_check(path: Path) -> Any:
    return train_eval_datasets(DPOStageConfig(dataset=str(path)), None, preference_records, DEFAULT_TAG_DIMENSIONS)


def grpo_check(path: Path) -> Any:
    config = GRPOStageConfig(dataset=str(path), per_device_train_batch_size=4, num_generations=2)
    return train_eval_datasets(config, None, prompt_records, DEFAULT_TAG_DIMENSIONS, prompts_per_step(config))


def online_check(path: Path) -> Any:
    return online_prompt_records(OnlineStageConfig(dataset=str(path), per_device_train_batch_size=1), None, None)


STAGE_CHECKS: list[Callable[[Path], Any]] = [sft_check, dpo_check, grpo_check, online_check]
"""Every stage family's whole-dataset check (one drawn per example: each reads the file through datasets)."""


def assert_result_or_user_error(content: bytes, check: Callable[[Path], Any], suffix: str = ".jsonl") -> None:
    """``check`` and the prompt-record reader of the task suite and best-of-n on a file holding ``content``:
    a result, or a UserError whose message names the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        for run in (check, read_record_file):
            try:
                run(path)
            except UserError as exc:
                assert str(path) in str(exc), f"{run.__name__}: {exc}"


stage_checks = st.sampled_from(STAGE_CHECKS)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
tagged_text = st.tuples(
    st.sampled_from(["", "<brevity 2> ", "<brevity 9> ", "<brevty 2> ", "<brevity 2 ", "<structure max>", "<div> "]),
    st.text(max_size=30),
).map("".join)
columns = st.sampled_from(["prompt", "completion", "chosen", "rejected", "response", "messages", "tag_brevity"])
chats = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", 3]), "content": tagged_text | json_values}
    ),
    max_size=3,
)
records = st.dictionaries(columns, tagged_text | json_values | chats, max_size=5)


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@SETTINGS
@given(st.binary(max_size=200), stage_checks)
def test_random_bytes(content, check):
    assert_result_or_user_error(content, check)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=6), st.data(), stage_checks)
def test_truncated_json_lines(rows, data, check):
    content = jsonl(rows)
    assert_result_or_user_error(content[: data.draw(st.integers(0, len(content)))], check)


@SETTINGS
@given(st.text(alphabet=" \t\r\n\x0b\x0c", max_size=20), stage_checks)
def test_empty_and_whitespace_only_files(content, check):
    assert_result_or_user_error(content.encode(), check)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=6), stage_checks)
def test_columns_of_any_type(rows, check):
    assert_result_or_user_error(jsonl(rows), check)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=4), st.sampled_from([".json", ".csv"]), stage_checks)
def test_other_formats(rows, suffix, check):
    assert_result_or_user_error(json.dumps(rows).encode() if suffix == ".json" else jsonl(rows), check, suffix)


@settings(SETTINGS, max_examples=5)
@given(st.integers(10_000, 200_000), st.sampled_from(["prompt", "completion"]), stage_checks)
def test_very_long_lines(length, column, check):
    rows = [{"prompt": "Say hi.", "completion": "Hi.", "chosen": "a", "rejected": "b"}] * 8
    assert_result_or_user_error(jsonl([*rows, {**rows[0], column: "x" * length}]), check)


recipe_keys = st.sampled_from(
    ["name", "model", "seed", "stages", "objectives", "tag_dimensions", "precision", "aggregator", "output_dir"]
) | st.text(max_size=8)
stage_types = st.sampled_from(["sft", "dpo", "grpo", "rloo", "ppo", "rwr", "eval", "best_of_n", "reward_model"])
stage_keys = st.sampled_from(["dataset", "max_steps", "learning_rate", "num_generations", "max_length", "peft"])
stages = st.lists(st.dictionaries(stage_types, st.dictionaries(stage_keys, json_values, max_size=3), max_size=1))
recipes = st.dictionaries(recipe_keys, json_values | stages, max_size=6)


@SETTINGS
@given(recipes)
def test_random_recipe_mappings(mapping):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(mapping))
        try:
            load_recipe(path)
        except UserError as exc:
            assert str(path) in str(exc), str(exc)
