"""The precision policy: which precision each stage computes in, and which dtypes the fast paths take.

A recipe's run-level ``precision`` is ``auto``, ``fp32`` or ``bf16``: ``fp32`` and ``bf16`` set every stage's
``bf16`` key (:func:`stage_bf16`); ``auto`` leaves each stage's, and ``bf16: null`` gets bf16 autocast where
the device runs it natively (:func:`resolve_bf16`). bf16 is always autocast over float32 master weights.
Every fast path computes in :func:`fast_path_dtype`'s dtype, or steps aside where it gives None.

Notes: docs/papers.md#precisionpy.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32", "bf16"]
"""The recipe's run-level ``precision`` (this module imports torch only when a function needs it, so the
recipe schema can name this type)."""

FAST_PATH_DTYPES = ("float32", "bfloat16")
"""The torch dtypes the fast paths compute in (each is tested against the plain path in both)."""


def accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available()


@cache
def fast_bf16_on_cpu() -> bool:
    """Whether this CPU has native bf16 matmul kernels (oneDNN with AVX-512 BF16 or AMX).

    Without them torch still runs bf16 matmuls, through a scalar fallback about 50 times slower than
    float32 (measured on an AVX2-only EPYC: 1.1 GFLOP/s against 54), so "supported" is not enough.
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def stage_bf16(precision: Precision, bf16: bool | None) -> bool | None:
    """A stage's ``bf16`` key under the run-level ``precision``: ``fp32`` -> False, ``bf16`` -> True (the
    run-level choice wins over the stage's), ``auto`` -> the stage's own key (None: the device decides)."""
    return {"fp32": False, "bf16": True}.get(precision, bf16)


def choose_bf16(requested: bool | None, *, supported: bool, native: bool) -> bool:
    """bf16 autocast or not: as ``requested``; None: where the device runs it natively (``native``).

    ``supported``: the device can run bf16 at all (a GPU without bf16 cannot).
    """
    if requested is None:
        return supported and native
    return requested and supported


@cache
def warn_slow_bf16() -> None:
    """The one warning of a process that runs bf16 on a CPU without native bf16 kernels."""
    warnings.warn(
        "bf16 was asked for, but this CPU has no native bf16 kernels (AVX-512 BF16 or AMX): torch runs "
        "bf16 matmuls through a scalar fallback, many times slower than float32 (precision: fp32 avoids it)",
        stacklevel=2,
    )


def resolve_bf16(requested: bool | None) -> bool:
    """:func:`choose_bf16` on this machine: on CPUs without native bf16 kernels, None gives float32 and
    True runs bf16 slowly, with a warning (once per process).

    TRL configs default to ``bf16=True``, which transformers rejects on a machine with no GPU unless
    ``use_cpu`` is set, and which on a CPU without bf16 kernels runs an order of magnitude slower.
    """
    from transformers.utils.import_utils import is_torch_bf16_available_on_device

    on_gpu = accelerator_available()
    supported = is_torch_bf16_available_on_device("cuda" if on_gpu else "cpu")
    native = on_gpu or fast_bf16_on_cpu()
    bf16 = choose_bf16(requested, supported=supported, native=native)
    if bf16 and not native:
        warn_slow_bf16()
    return bf16


def compute_dtype(device_type: str, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype a linear layer with ``weight_dtype`` weights computes in here: autocast's when it is on
    for ``device_type``, else the weights'."""
    import torch

    if weight_dtype.is_floating_point and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight_dtype


def fast_path_dtype(device_type: str, weight_dtype: torch.dtype, *, onednn: bool = False) -> torch.dtype | None:
    """The dtype the fast paths compute in for such a layer, or None: they step aside for the plain path.

    The one rule: a fast path runs where the compute dtype (:func:`compute_dtype`) is one of
    :data:`FAST_PATH_DTYPES` (float32, bf16), the ones it is tested in; a path that multiplies with
    oneDNN's CPU kernels directly (``onednn``: packed decoding weights) takes bf16 only where the CPU
    has native bf16 kernels (:func:`fast_bf16_on_cpu`).
    """
    import torch

    dtype = compute_dtype(device_type, weight_dtype)
    if dtype not in [getattr(torch, name) for name in FAST_PATH_DTYPES]:
        return None
    if onednn and dtype == torch.bfloat16 and not fast_bf16_on_cpu():
        return None
    return dtype
