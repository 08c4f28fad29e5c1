from moalign.bench.reward_phase import time_reward_phase


def test_reward_phase_benchmark_returns_sane_timings(tiny_bert_dir):
    result = time_reward_phase(k=3, batch_size=2, backbone=str(tiny_bert_dir), seq_len=8, repeats=2, warmup=0)
    assert {"k", "batch_size", "seq_len", "backbone", "device", "separate_s", "multihead_s", "ratio"} <= set(result)
    assert result["k"] == 3 and result["batch_size"] == 2 and result["seq_len"] == 8
    assert result["separate_s"] > 0 and result["multihead_s"] > 0
    assert result["ratio"] == result["separate_s"] / result["multihead_s"]
