"""The machine's matmul peak, measured: the denominator of model FLOP utilisation (MFU)."""

from __future__ import annotations

import time

import torch


def _matmul_seconds(size: int, dtype: torch.dtype, device: str) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    start = time.perf_counter()
    torch.mm(a, b)
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_gflops(
    dtype: torch.dtype, *, size: int = 2048, repeats: int = 5, seconds: float = 0.25, device: str = "cpu"
) -> float:
    """Best GFLOP/s of ``repeats`` square matmuls in ``dtype`` (2 n^3 FLOPs each).

    ``n`` doubles from 256 up to ``size`` while one product takes under ``seconds`` (on CPUs without
    bf16 kernels a 2048 bf16 matmul takes over a minute). The best run, not the median: a peak is what
    the hardware can do, and on a shared machine the slower runs measure the neighbours.
    """
    n = min(256, size)
    while n < size and _matmul_seconds(n, dtype, device) < seconds:
        n *= 2
    best = min(_matmul_seconds(n, dtype, device) for _ in range(repeats))
    return 2 * n**3 / max(best, 1e-9) / 1e9


def machine_peak(*, size: int = 2048, repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """``{"fp32_gflops", "bf16_gflops"}``: the measured matmul peaks of this machine."""
    return {
        "fp32_gflops": matmul_gflops(torch.float32, size=size, repeats=repeats, device=device),
        "bf16_gflops": matmul_gflops(torch.bfloat16, size=size, repeats=repeats, device=device),
    }
