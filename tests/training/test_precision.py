"""The precision policy: the run-level key, each stage's bf16 choice, the one warning, the fast paths' dtypes."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from moalign import precision
from moalign.recipe import RecipeError, load_recipe


@pytest.mark.parametrize(
    ("requested", "supported", "native", "expected"),
    [
        (None, True, False, False),  # AVX2-only CPU: the scalar bf16 fallback is far slower than float32
        (None, True, True, True),  # AVX-512 BF16 / AMX, or a GPU with bf16
        (None, False, True, False),  # a GPU without bf16
        (True, True, False, True),  # an explicit request is honoured, however slow
        (True, False, True, False),
        (False, True, True, False),
    ],
)
def test_choose_bf16(requested, supported, native, expected):
    assert precision.choose_bf16(requested, supported=supported, native=native) is expected


@pytest.mark.parametrize(
    ("run", "stage", "expected"),
    [("auto", None, None), ("auto", True, True), ("auto", False, False), ("fp32", True, False), ("bf16", False, True)],
)
def test_an_explicit_run_level_precision_overrides_the_stage_key(run, stage, expected):
    assert precision.stage_bf16(run, stage) is expected


@pytest.fixture
def cpu_without_bf16_kernels(monkeypatch):
    monkeypatch.setattr(precision, "accelerator_available", lambda: False)
    monkeypatch.setattr(precision, "fast_bf16_on_cpu", lambda: False)
    precision.warn_slow_bf16.cache_clear()
    yield
    precision.warn_slow_bf16.cache_clear()


def test_bf16_forced_on_a_cpu_without_native_kernels_runs_with_exactly_one_warning(cpu_without_bf16_kernels):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert precision.resolve_bf16(None) is False  # auto: float32, silently
        assert all(precision.resolve_bf16(True) for _ in range(3))
    assert len(caught) == 1 and "no native bf16 kernels" in str(caught[0].message)


def test_fast_paths_compute_in_float32_or_bf16_and_step_aside_otherwise(monkeypatch):
    monkeypatch.setattr(precision, "fast_bf16_on_cpu", lambda: True)
    assert precision.fast_path_dtype("cpu", torch.float32) == torch.float32
    assert precision.fast_path_dtype("cpu", torch.bfloat16) == torch.bfloat16
    assert precision.fast_path_dtype("cpu", torch.float16) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert precision.fast_path_dtype("cpu", torch.float32, onednn=True) == torch.bfloat16
        monkeypatch.setattr(precision, "fast_bf16_on_cpu", lambda: False)
        assert precision.fast_path_dtype("cpu", torch.float32) == torch.bfloat16
        assert precision.fast_path_dtype("cpu", torch.float32, onednn=True) is None  # oneDNN without bf16 kernels
    with torch.autocast("cpu", dtype=torch.float16):
        assert precision.fast_path_dtype("cpu", torch.float32) is None


RECIPE = """name: p
stages:
  - test_echo: {}
  - sft: {dataset: x.jsonl, bf16: true}
  - rwr: {dataset: x.jsonl}
  - reward_model: {dataset: x.jsonl, dimensions: {a: 2}}
  - best_of_n: {bf16: false}
"""


def _bf16_keys(recipe):
    return [getattr(s.config, "bf16", "-") for s in recipe.stages]


def test_the_recipe_precision_sets_every_stage_bf16_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    assert load_recipe(path).precision == "auto"
    assert _bf16_keys(load_recipe(path)) == ["-", True, None, None, False]  # auto: the stages' own keys
    assert _bf16_keys(load_recipe(path, ["precision=fp32"])) == ["-", False, False, False, False]
    assert _bf16_keys(load_recipe(path, ["precision=bf16"])) == ["-", True, True, True, True]
    assert "precision: fp32" in load_recipe(path, ["precision=fp32"]).to_yaml()


def test_an_unknown_precision_is_one_clear_error_with_exit_code_2(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: p\n")
    with pytest.raises(RecipeError, match=r"precision: Input should be 'auto', 'fp32' or 'bf16' \(got 'fp16'\)"):
        load_recipe(path, ["precision=fp16"])
    result = subprocess.run(
        [sys.executable, "-m", "moalign", "run", str(path), "--set", "precision=fp16"], capture_output=True, text=True
    )
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert result.returncode == 2 and len(problems) == 1, result.stderr
    assert "precision: Input should be 'auto', 'fp32' or 'bf16' (got 'fp16')" in problems[0]
