"""Tiny sequence-classification models for the reward scorers (random weights, real MiniLM tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _save_bert_classifier(out: Path, num_labels: int, id2label: dict[int, str] | None = None) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from moalign.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:minilm-l6"))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=256,
        num_labels=num_labels,
        id2label=id2label or {i: f"LABEL_{i}" for i in range(num_labels)},
        label2id={v: k for k, v in (id2label or {i: f"LABEL_{i}" for i in range(num_labels)}).items()},
    )
    torch.manual_seed(num_labels)
    BertForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT preference reward model: one output (the reward logit)."""
    return _save_bert_classifier(tmp_path_factory.mktemp("tiny-rm"), 1)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT text classifier with labels ``fluent`` and ``disfluent``."""
    return _save_bert_classifier(tmp_path_factory.mktemp("tiny-clf"), 2, {0: "fluent", 1: "disfluent"})
