"""The bench records the CPU's features and the precision each side ran in; its quick mode runs in bf16 on
every machine when forced (as on a bf16-native CPU, where TRL's defaults and the project's stages use it)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moalign import precision
from moalign.bench.suite import cpu_features, format_table
from moalign.cli import app


def test_cpu_features_from_the_cpuinfo_flags_line():
    cpuinfo = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n"
    assert cpu_features(cpuinfo) == {
        "avx2": True,
        "avx512f": True,
        "avx512_bf16": True,
        "amx_bf16": False,
        "amx_tile": True,
    }
    assert not any(cpu_features("").values())


@pytest.mark.filterwarnings("ignore")
def test_bench_quick_in_forced_bf16_records_each_side_s_precision(tiny_llama_dir, tiny_bert_dir, tmp_path, monkeypatch):
    import moalign.bench.dpo
    import moalign.bench.grpo
    import moalign.bench.suite

    monkeypatch.setattr(precision, "choose_bf16", lambda requested, **_: requested is not False)
    for module in (moalign.bench.dpo, moalign.bench.grpo):
        monkeypatch.setattr(module, "trl_default_bf16", lambda: (True, None))  # TRL's true default
    monkeypatch.setattr(moalign.bench.suite, "fast_bf16_on_cpu", lambda: True)
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--model", str(tiny_llama_dir), "--reward-backbone", str(tiny_bert_dir)]
    result = CliRunner().invoke(app, [*args, "--k", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["machine"]["native_bf16"] is True
    assert set(data["machine"]["cpu_features"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    for key in ("dpo", "grpo"):
        assert data[key]["baseline"]["bf16"] and data[key]["project"]["bf16"]
        assert data[key]["variants"]["fp32"]["bf16"] is False  # the stage in float32 beside it
    assert data["generation"]["baseline"]["bf16"] is False and data["generation"]["project"]["bf16"] is True
    assert data["generation"]["variants"]["fp32"]["bf16"] is False
    assert data["reward"]["baseline"]["bf16"] is False
    table = format_table(data)
    assert table in result.output and "native bf16: yes" in table
    assert "| DPO, fp32 |" in table and "| evaluation generation, fp32 |" in table
