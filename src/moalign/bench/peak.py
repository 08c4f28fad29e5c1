"""The machine's matmul peak, measured: the denominator of model FLOP utilisation (MFU)."""

from __future__ import annotations

import time

import torch


def matmul_gflops(dtype: torch.dtype, *, size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best GFLOP/s of ``repeats`` square ``size x size`` matmuls in ``dtype`` (2 size^3 FLOPs each).

    The best run, not the median: a peak is what the hardware can do, and on a shared machine the
    slower runs measure the neighbours.
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine_peak(*, size: int = 2048, repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """``{"fp32_gflops", "bf16_gflops"}``: the measured matmul peaks of this machine."""
    return {
        "fp32_gflops": matmul_gflops(torch.float32, size=size, repeats=repeats, device=device),
        "bf16_gflops": matmul_gflops(torch.bfloat16, size=size, repeats=repeats, device=device),
    }
