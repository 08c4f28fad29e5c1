"""bf16 is on by default only where the device runs it fast."""

from __future__ import annotations

import pytest

from moalign.training import args


@pytest.mark.parametrize(
    ("fast", "requested", "expected"),
    [
        (False, None, False),  # AVX2-only CPU: the scalar bf16 fallback is far slower than float32
        (True, None, True),
        (False, True, True),  # an explicit request is honoured
        (True, False, False),
    ],
)
def test_resolve_bf16_on_cpu(monkeypatch, fast, requested, expected):
    monkeypatch.setattr(args, "accelerator_available", lambda: False)
    monkeypatch.setattr(args, "fast_bf16_on_cpu", lambda: fast)
    assert args.resolve_bf16(requested) is expected
