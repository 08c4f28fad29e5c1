"""The ``python`` scorer: a user function ``path/to/file.py:function(prompts, completions, **columns)``
(or ``package.module:function`` from an installed package).

A file is imported from exactly the path the recipe names (relative to the working directory), never
searched for on ``sys.path``: a missing file is an error, not a fall-back to a same-named module.
The function returns one score per sample: a number, or None where it does not apply (as TRL's reward
functions do). A NaN or infinite return value is an error, so bugs do not pass as "does not apply",
and an exception raised by the function is reported with the function's name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.rewards.scorers.base import Scorer, register_scorer


class PythonConfig(StrictModel):
    function: str = Field(pattern=r"^([^:]+\.py|[A-Za-z_][A-Za-z0-9_.]*):[A-Za-z_][A-Za-z0-9_]*$")
    """``path/to/file.py:function`` (that file only), or ``package.module:function`` of an installed package."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for every call (they may not reuse a column's name)."""


def module_from_file(ref: str, path: Path) -> ModuleType:
    """Execute the Python file ``path`` as a module of its own (under a name no import can collide with)."""
    if not path.is_file():
        raise UserError(f"python scorer '{ref}': file '{path}' not found")
    name = f"moalign_user_scorer_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UserError(f"python scorer '{ref}': importing '{path}' raised {type(exc).__name__}: {exc}") from exc
    return module


def import_function(ref: str) -> Callable[..., Any]:
    """The callable named by ``file.py:function`` or ``package.module:function``; a clear error if it cannot
    be found."""
    module_name, _, attr = ref.rpartition(":")
    if module_name.endswith(".py"):
        module = module_from_file(ref, Path(module_name).expanduser())
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"python scorer '{ref}': cannot import module '{module_name}': {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"python scorer '{ref}': module '{module_name}' has no function '{attr}'")
    return fn


def _as_float(value: Any) -> float | None:
    """``float(value)`` for numbers (bools and numpy/torch scalars included), None for anything else."""
    if isinstance(value, str | bytes):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def checked_scores(ref: str, values: Any, size: int) -> list[float]:
    """``values`` as floats (None -> NaN, "does not apply"); errors name the function and the sample."""
    try:
        values = list(values)
    except TypeError:
        raise UserError(f"python scorer '{ref}' returned {type(values).__name__}, expected a list") from None
    if len(values) != size:
        raise UserError(f"python scorer '{ref}' returned {len(values)} scores for {size} samples")
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(math.nan)
            continue
        f = _as_float(v)
        if f is None:
            raise UserError(f"python scorer '{ref}': sample {i}: expected a number or None, got {v!r}")
        if not math.isfinite(f):
            raise UserError(f"python scorer '{ref}': sample {i}: score {f} (return None where a score does not apply)")
        out.append(f)
    return out


@register_scorer("python", PythonConfig, partial=True)
def build_python(config: PythonConfig) -> Scorer:
    """Score = whatever the user's function returns (None = does not apply)."""
    fn = import_function(config.function)

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        clash = set(config.kwargs) & set(columns)
        if clash:
            raise UserError(f"python scorer '{config.function}': kwargs {sorted(clash)} clash with data columns")
        try:
            values = fn(list(prompts), list(completions), **columns, **config.kwargs)
        except Exception as exc:
            raise UserError(f"python scorer '{config.function}' raised {type(exc).__name__}: {exc}") from exc
        return checked_scores(config.function, values, len(prompts))

    return score
