"""The baseline of the benchmark: TRL's trainers with their defaults, and the one default we cannot keep."""

from __future__ import annotations

from moalign.precision import accelerator_available, fast_bf16_on_cpu


def trl_default_bf16() -> tuple[bool, str | None]:
    """TRL's default precision here, and why it was changed (None when kept).

    TRL configs default to ``bf16=True``. On a CPU without native bf16 kernels torch runs bf16 through
    a scalar fallback some 50x slower than float32 (the bench's own peak figures show it), where one
    DPO step would take many minutes: there the baseline runs in float32, which only makes it faster.
    """
    if accelerator_available() or fast_bf16_on_cpu():
        return True, None
    return False, "TRL's default bf16=True replaced by float32: this CPU has no native bf16 kernels"
