import json
import time

import pytest
import torch
from typer.testing import CliRunner

from moalign.bench.dpo import dpo_flops_per_token
from moalign.bench.measure import PeakRSS
from moalign.bench.suite import SIZES, format_table
from moalign.cli import app


def test_dpo_model_flops_per_token_worked_by_hand():
    # reference forward 2N + policy forward 2N + activation gradients 2N (+ weight gradients 2N)
    assert dpo_flops_per_token(100, trains_weights=True) == 800
    assert dpo_flops_per_token(100, trains_weights=False) == 600


def test_peak_rss_sees_an_allocation_inside_the_block():
    with PeakRSS(interval=0.005) as rss:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, touched
        block.add_(1)
        time.sleep(0.2)  # held for 40 sampling intervals, so a sampler delayed by a busy machine still sees it
        del block
    assert rss.peak_mib >= 48


def test_quick_sizes_are_smaller_than_the_full_run():
    for name, full in SIZES["full"].items():
        quick = SIZES["quick"][name]
        assert quick.keys() == full.keys()
        assert all(quick[key] <= full[key] for key in full), name


@pytest.mark.filterwarnings("ignore")
def test_bench_quick_writes_every_comparison(tiny_llama_dir, tiny_bert_dir, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--model", str(tiny_llama_dir), "--reward-backbone", str(tiny_bert_dir)]
    result = CliRunner().invoke(app, [*args, "--k", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["model"] == str(tiny_llama_dir)
    assert data["peak"]["fp32_gflops"] > 0 and data["peak"]["bf16_gflops"] > 0
    rates = {"dpo": "tokens_per_s", "grpo": "completions_per_s", "generation": "tokens_per_s"}
    for key, rate in rates.items():
        entry = data[key]
        assert entry["baseline"][rate] > 0 and entry["project"][rate] > 0
        assert entry["speedup"] == pytest.approx(entry["project"][rate] / entry["baseline"][rate])
    reward = data["reward"]
    assert reward["k"] == 2
    assert reward["speedup"] == pytest.approx(reward["baseline"]["seconds"] / reward["project"]["seconds"])
    # the project's DPO and GRPO configurations differ from TRL's defaults where it matters here
    assert data["dpo"]["baseline"]["gradient_checkpointing"] and not data["dpo"]["project"]["gradient_checkpointing"]
    assert data["dpo"]["baseline"]["reference_copy"]
    assert data["dpo"]["project"]["shared_prompt"] and data["dpo"]["project"]["reference_copy"]
    lora = data["dpo"]["variants"]["lora"]
    assert lora["lora"] and not lora["reference_copy"]  # adapters disabled: no second model copy
    assert lora["speedup"] == pytest.approx(lora["tokens_per_s"] / data["dpo"]["baseline"]["tokens_per_s"])
    # one pair per step: the shared-prompt row computes the prompt once, TRL's two rows twice
    assert data["dpo"]["project"]["computed_tokens_per_step"] < data["dpo"]["project"]["tokens_per_step"]
    assert data["dpo"]["baseline"]["computed_tokens_per_step"] == data["dpo"]["baseline"]["tokens_per_step"]
    assert data["grpo"]["baseline"]["gradient_checkpointing"] and not data["grpo"]["project"]["gradient_checkpointing"]
    # GRPO at equal settings runs TRL's KL coefficient; the stage's own is a variant against the same baseline
    assert data["grpo"]["project"]["beta"] == data["grpo"]["baseline"]["beta"] == 0.0
    stage_beta = data["grpo"]["variants"]["stage beta"]
    assert stage_beta["beta"] == 0.1
    assert stage_beta["speedup"] == pytest.approx(
        stage_beta["completions_per_s"] / data["grpo"]["baseline"]["completions_per_s"]
    )
    assert "| GRPO, stage beta | as above |" in result.output
    assert format_table(data) in result.output
    assert "| DPO, 1 pairs/step" in result.output
