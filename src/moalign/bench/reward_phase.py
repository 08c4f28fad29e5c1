"""Reward-phase benchmark: k objectives served by k separate reward models vs one multi-head model.

Seed 002 argues that one reward model with one classification head per preference dimension costs
one forward pass where MORLHF-style set-ups need one per objective. This measures that claim on the
machine at hand: one batch of ``batch_size`` sequences of ``seq_len`` tokens through ``k`` separate
single-output sequence-classification models, and through one shared backbone with ``k`` heads.
Weights are random (the cost of a forward pass does not depend on them); the architecture comes from
``backbone``'s config.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


class MultiHeadClassifier(torch.nn.Module):
    """One encoder, ``k`` linear classification heads over its first-token state (one forward)."""

    def __init__(self, encoder: torch.nn.Module, hidden_size: int, k: int, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = torch.nn.ModuleList(torch.nn.Linear(hidden_size, classes) for _ in range(k))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
        return [head(hidden).softmax(dim=-1) for head in self.heads]


def _median_seconds(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def time_reward_phase(
    k: int = 3,
    batch_size: int = 16,
    *,
    backbone: str = "builtin:minilm-l6",
    seq_len: int = 128,
    classes: int = 5,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Seconds per batch for the reward phase, both ways, and their ratio (separate / multi-head).

    Returns ``{"k", "batch_size", "seq_len", "backbone", "device", "separate_s", "multihead_s",
    "ratio"}``; ``ratio`` > 1 means the multi-head model is faster. Medians over ``repeats`` runs
    after ``warmup`` runs, all in this one process.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from moalign.models import resolve_model

    if k < 1 or batch_size < 1 or seq_len < 2:
        raise ValueError("k, batch_size must be >= 1 and seq_len >= 2")
    config = AutoConfig.from_pretrained(resolve_model(backbone), trust_remote_code=False)
    config.num_labels = 1
    torch.manual_seed(seed)
    separate = [AutoModelForSequenceClassification.from_config(config).eval().to(device) for _ in range(k)]
    multihead = MultiHeadClassifier(AutoModel.from_config(config), config.hidden_size, k, classes).eval().to(device)
    seq_len = min(seq_len, getattr(config, "max_position_embeddings", seq_len))
    ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), device=device)
    mask = torch.ones_like(ids)

    def run_separate() -> list[torch.Tensor]:
        return [model(input_ids=ids, attention_mask=mask).logits for model in separate]

    def run_multihead() -> list[torch.Tensor]:
        return multihead(ids, mask)

    separate_s = _median_seconds(run_separate, repeats, warmup)
    multihead_s = _median_seconds(run_multihead, repeats, warmup)
    return {
        "k": k,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "backbone": backbone,
        "device": device,
        "separate_s": separate_s,
        "multihead_s": multihead_s,
        "ratio": separate_s / multihead_s,
    }
