"""The multi-head classification reward model (seed 002, MOSLIM, section 2.2 and figure 2).

A Hugging Face backbone (encoder or decoder) reads a (question, answer) pair with the preference tags stripped
from the question (seed 002's "prompt alignment"); its pooled hidden state feeds one linear head per dimension,
each with that dimension's number of intensity classes, all from one forward pass. Pooling: the mean over
non-pad tokens for encoders, the last non-pad token for decoders. On disk: the backbone and its tokenizer as a
Hugging Face model, the heads in ``heads.safetensors``, and ``reward_model.json``.

Reading notes: docs/papers.md#rmmodelpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moalign.atomic import atomic_directory
from moalign.errors import UserError
from moalign.tags import DIMENSION_NAME, strip_tags

CONFIG_FILE = "reward_model.json"
HEADS_FILE = "heads.safetensors"
FORMAT_VERSION = 1



@dataclass
class RMScores:
    """Scores of ``B`` (prompt, response) pairs: per dimension, class probabilities and expected intensity."""

    probs: dict[str, torch.Tensor]
    """Dimension -> ``[B, n]`` probabilities of intensities ``1..n``."""
    expected: dict[str, torch.Tensor]
    """Dimension -> ``[B]`` expected intensity ``sum_k k * p_k``, in ``[1, n]``."""

    def predicted(self) -> dict[str, torch.Tensor]:
        """Dimension -> ``[B]`` most probable intensity (1-based)."""
        return {d: p.argmax(-1) + 1 for d, p in self.probs.items()}


def expected_intensity(probs: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` probabilities of intensities ``1..n`` -> ``[B]`` expectation ``sum_k k * p_k``."""
    levels = torch.arange(1, probs.shape[-1] + 1, dtype=probs.dtype, device=probs.device)
    return probs @ levels


def default_pooling(model_type: str) -> str:
    """``mean`` for encoder families (those with a masked-LM head in transformers), else ``last``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "mean" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """``[B, T, D]`` hidden states -> ``[B, D]``: masked mean, or the last position whose mask is 1.

    ``last`` works for left and right padding alike.
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    if how == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    last = (attention_mask.long() * positions).argmax(1)  # [B]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def _check_dimensions(dimensions: dict[str, int]) -> None:
    if not dimensions:
        raise UserError("a reward model needs at least one dimension")
    for name, classes in dimensions.items():
        if not DIMENSION_NAME.match(name):
            raise UserError(f"dimension name '{name}': use letters, digits, '_' and '-', starting with a letter or '_'")
        if int(classes) < 2:
            raise UserError(f"dimension '{name}': a head needs at least 2 classes, got {classes}")


class MultiHeadRewardModel(nn.Module):
    """Backbone + one linear classification head per dimension (seed 002, figure 2)."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        dimensions: dict[str, int],
        *,
        pooling: str = "auto",
        max_length: int = 512,
        backbone_name: str = "",
    ) -> None:
        super().__init__()
        _check_dimensions(dimensions)
        config = backbone.config
        if getattr(config, "is_encoder_decoder", False):
            raise UserError(f"backbone '{backbone_name}': encoder-decoder models are not supported")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.dimensions = {name: int(n) for name, n in dimensions.items()}
        self.pooling = default_pooling(config.model_type) if pooling == "auto" else pooling
        if self.pooling not in ("mean", "last"):
            raise UserError(f"pooling '{pooling}': expected auto, mean or last")
        self.max_length = max_length
        self.backbone_name = backbone_name
        hidden = getattr(config, "hidden_size", None) or config.get_text_config().hidden_size
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in self.dimensions.items()})

    @classmethod
    def from_backbone(
        cls,
        spec: str,
        dimensions: dict[str, int],
        *,
        pooling: str = "auto",
        max_length: int = 512,
        dtype: torch.dtype | None = None,
    ) -> MultiHeadRewardModel:
        """New heads (seeded by the caller's RNG) on a pretrained backbone ``spec`` (builtin:, hub id, dir)."""
        from moalign.models import load_encoder, load_tokenizer

        backbone = load_encoder(spec, dtype=dtype or torch.float32)
        tokenizer = load_tokenizer(spec, padding_side="right")
        return cls(backbone, tokenizer, dimensions, pooling=pooling, max_length=max_length, backbone_name=spec)

    # -- inputs -------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise (prompt, response) pairs, tags stripped, padded to the longest, truncated to max_length."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        questions = [strip_tags(p) for p in prompts]  # trained without tags (seed 002)
        tok = self.tokenizer
        if self.pooling == "mean":
            enc = tok(
                questions,
                list(responses),
                truncation="longest_first",
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        else:
            eos = tok.eos_token or ""
            texts = [f"{q}\n\n{a}{eos}" for q, a in zip(questions, responses, strict=True)]
            side = tok.truncation_side
            tok.truncation_side = "left"
            try:
                enc = tok(
                    texts,
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    add_special_tokens=True,
                    return_tensors="pt",
                )
            finally:
                tok.truncation_side = side
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    # -- forward ------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``[B, T]`` token ids and mask -> dimension -> ``[B, n]`` logits, all heads from one backbone pass."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state  # [B, T, D]
        pooled = pool(hidden, attention_mask, self.pooling)  # [B, D]
        first = next(iter(self.heads.values()))
        pooled = pooled.to(first.weight.dtype)
        return {name: head(pooled) for name, head in self.heads.items()}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32) -> RMScores:
        """Class probabilities and expected intensities for each pair; one forward per batch, no grad.

        Pairs are batched in order of length (less padding) and returned in input order, on CPU, float32.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        was_training = self.training
        self.eval()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]), reverse=True)
        chunks: dict[str, list[torch.Tensor]] = {d: [] for d in self.dimensions}
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = self.encode([prompts[i] for i in idx], [responses[i] for i in idx])
                logits = self(**{k: v.to(self.device) for k, v in enc.items()})
                for d, z in logits.items():
                    chunks[d].append(z.float().softmax(-1).cpu())
        finally:
            self.train(was_training)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        probs = {}
        for d, n in self.dimensions.items():
            stacked = torch.cat(chunks[d]) if chunks[d] else torch.empty(0, n)
            probs[d] = stacked[inverse]
        return RMScores(probs=probs, expected={d: expected_intensity(p) for d, p in probs.items()})

    # -- persistence --------------------------------------------------------------------------

    def merge_adapters(self) -> None:
        """Fold LoRA adapters (if any) into the backbone weights, leaving a plain backbone."""
        if hasattr(self.backbone, "merge_and_unload"):
            self.backbone = self.backbone.merge_and_unload()

    def config_dict(self) -> dict[str, Any]:
        return {
            "format": "moalign-multihead-rm",
            "version": FORMAT_VERSION,
            "backbone": self.backbone_name,
            "model_type": self.backbone.config.model_type,
            "dimensions": self.dimensions,
            "pooling": self.pooling,
            "max_length": self.max_length,
        }

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model directory atomically (replacing ``path``); ``extra`` goes into its JSON config.

        Under ``accelerate launch`` only the main process writes (the weights are the same on every rank).
        """
        from safetensors.torch import save_file

        from moalign.processes import is_main_process

        self.merge_adapters()
        path = Path(path)
        if not is_main_process():
            return path
        with atomic_directory(path) as tmp:
            self.backbone.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            heads = {k: v.detach().float().contiguous().cpu() for k, v in self.heads.state_dict().items()}
            save_file(heads, str(tmp / HEADS_FILE), metadata={"format": "pt"})
            (tmp / CONFIG_FILE).write_text(json.dumps({**self.config_dict(), **(extra or {})}, indent=2) + "\n")
        return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``reward_model.json`` of a saved model; a :class:`UserError` if ``path`` is not one."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise UserError(f"'{path}' is not a multi-head reward model directory (no {CONFIG_FILE})")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}: invalid JSON ({exc})") from None
    for key in ("dimensions", "pooling", "max_length"):
        if key not in config:
            raise UserError(f"{file}: missing key '{key}'")
    if config.get("version", FORMAT_VERSION) > FORMAT_VERSION:
        raise UserError(f"{file}: format version {config['version']} is newer than this moalign reads")
    return config


def load(
    path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> MultiHeadRewardModel:
    """Load a saved multi-head reward model (eval mode) from its directory."""
    from safetensors.torch import load_file

    from moalign.models import load_encoder, load_tokenizer

    config = read_config(path)
    backbone = load_encoder(str(path), dtype=dtype or torch.float32)
    tokenizer = load_tokenizer(str(path), padding_side="right")
    model = MultiHeadRewardModel(
        backbone,
        tokenizer,
        config["dimensions"],
        pooling=config["pooling"],
        max_length=config["max_length"],
        backbone_name=config.get("backbone", ""),
    )
    heads = load_file(str(Path(path) / HEADS_FILE))
    missing, unexpected = model.heads.load_state_dict(heads, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{Path(path) / HEADS_FILE}: heads do not match {CONFIG_FILE} (missing {missing}, unexpected {unexpected})"
        )
    if device is not None:
        model.to(device)
    return model.eval()
