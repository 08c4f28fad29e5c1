"""The ``relevance`` scorer: cosine similarity of sentence embeddings of prompt and completion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.rewards.scorers.base import ModelCache, Scorer, default_device, length_sorted_batches, register_scorer

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len"]


def _model_file(spec: str, path: str, name: str) -> Path | None:
    local = Path(path) / name
    if local.is_file():
        return local
    if not Path(path).exists():  # a hub id: look in the Hugging Face cache only
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, name)
        return Path(cached) if isinstance(cached, str) else None
    return None


def sentence_transformers_pooling(spec: str, path: str) -> Pooling:
    """The pooling a sentence-transformers model declares in ``1_Pooling/config.json`` (mean if none)."""
    file = _model_file(spec, path, "1_Pooling/config.json")
    if file is None:
        return "mean"
    config = json.loads(file.read_text())
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
        ("pooling_mode_mean_tokens", "mean"),
    ):
        if config.get(key):
            return mode  # type: ignore[return-value]
    raise UserError(f"model '{spec}': unsupported pooling in 1_Pooling/config.json: {config}")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """Sentence embeddings ``[B, H]`` from token states ``[B, T, H]`` and ``attention_mask [B, T]``."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1)
    summed = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp_min(1.0)
    return summed / (count.sqrt() if mode == "mean_sqrt_len" else count)


class SentenceEncoder:
    """A bare encoder plus its pooling: texts -> embeddings, each distinct text encoded once per call."""

    def __init__(self, spec: str, pooling: Literal["auto"] | Pooling, device: str | None) -> None:
        from moalign.models import load_encoder, load_tokenizer, resolve_model

        path = resolve_model(spec)
        self.pooling: Pooling = sentence_transformers_pooling(spec, path) if pooling == "auto" else pooling
        st_config = _model_file(spec, path, "sentence_bert_config.json")
        self.max_length = int(json.loads(st_config.read_text()).get("max_seq_length", 512)) if st_config else 512
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(spec, padding_side="right")
        self.model = load_encoder(spec).eval().to(self.device)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        unique = list(dict.fromkeys(texts))
        out = torch.empty(len(unique), self.model.config.hidden_size, dtype=torch.float32)
        for idx in length_sorted_batches(unique, batch_size):
            enc = self.tokenizer(
                [unique[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state
            out[idx] = pool(hidden, enc["attention_mask"], self.pooling).float().cpu()
        position = {text: i for i, text in enumerate(unique)}
        return out[[position[t] for t in texts]]


class RelevanceConfig(StrictModel):
    model: str = "builtin:minilm-l6"
    """A sentence encoder (bare ``AutoModel``); default all-MiniLM-L6-v2, embedded."""
    pooling: Literal["auto", "mean", "cls", "max", "mean_sqrt_len"] = "auto"
    """``auto``: what the model's sentence-transformers pooling config says (mean if it has none)."""
    batch_size: int = Field(32, ge=1)
    device: str | None = None


@register_scorer("relevance", RelevanceConfig)
def build_relevance(config: RelevanceConfig, *, models: ModelCache) -> Scorer:
    """Score = cos(embed(prompt), embed(completion)) in [-1, 1]; an empty text embeds its special tokens."""
    encoder = models.get(
        ("sentence-encoder", config.model, config.pooling, config.device),
        lambda: SentenceEncoder(config.model, config.pooling, config.device),
    )

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        if not prompts:
            return []
        emb = encoder.encode([*prompts, *completions], config.batch_size)
        p, c = emb[: len(prompts)], emb[len(prompts) :]
        return torch.nn.functional.cosine_similarity(p, c, dim=-1, eps=1e-8).tolist()

    return score
