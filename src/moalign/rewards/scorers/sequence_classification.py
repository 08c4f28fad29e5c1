"""Scorers from Hugging Face sequence-classification models.

- ``reward_model``: a preference reward model's logit for (question, answer), e.g.
  OpenAssistant/reward-model-deberta-v3-large-v2, which seed 000 used for helpfulness.
- ``classifier``: the probability of a named label of a text classifier, optionally its complement,
  e.g. fluency = 1 - P(disfluent) from a BERT disfluency classifier (seed 000).

Objectives that use the same model share one loaded copy and one forward pass per batch.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.rewards.scorers.base import (
    BatchMemo,
    ModelCache,
    Scorer,
    default_device,
    length_sorted_batches,
    register_scorer,
)

InputFormat = Literal["pair", "chat", "completion"]


class SequenceClassifier:
    """A loaded sequence-classification model and its tokenizer; logits are memoised per batch."""

    def __init__(self, spec: str, device: str | None = None) -> None:
        from transformers import AutoModelForSequenceClassification

        from moalign.models import load_tokenizer, resolve_model
        from moalign.models.loading import pretrained_kwargs

        self.spec = spec
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(spec, padding_side="right")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                resolve_model(spec), dtype=torch.float32, **pretrained_kwargs()
            )
        except (OSError, ValueError, pickle.UnpicklingError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load sequence-classification model '{spec}': {first}") from exc
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.eval().to(self.device)
        self._memos: dict[tuple[str, int], BatchMemo] = {}

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def forwards(self) -> int:
        """How many batches of samples were actually run through the model (after memoisation)."""
        return sum(m.computed for m in self._memos.values())

    def label_index(self, label: int | str) -> int:
        """The output index of ``label``: an index, a name in ``id2label`` (any case) or ``LABEL_n``."""
        id2label = {int(i): str(name) for i, name in (self.model.config.id2label or {}).items()}
        if isinstance(label, int) and 0 <= label < self.num_labels:
            return label
        if isinstance(label, str):
            for i, name in id2label.items():
                if name == label or name.lower() == label.lower():
                    return i
            if label.upper().startswith("LABEL_") and label[6:].isdigit() and int(label[6:]) < self.num_labels:
                return int(label[6:])
        known = ", ".join(f"{i}: {name}" for i, name in sorted(id2label.items()))
        raise UserError(f"model '{self.spec}' has no label {label!r}; its labels are {known}")

    def resolve_format(self, fmt: str) -> InputFormat:
        if fmt == "auto":
            return "chat" if getattr(self.tokenizer, "chat_template", None) else "pair"
        return fmt  # type: ignore[return-value]

    def logits(
        self, prompts: Sequence[str], completions: Sequence[str], fmt: InputFormat, batch_size: int, max_length: int
    ) -> torch.Tensor:
        """``[B, num_labels]`` float32 logits on the CPU; one forward per distinct batch and format."""
        memo = self._memos.setdefault((fmt, max_length), BatchMemo())
        return memo(prompts, completions, lambda: self._forward(prompts, completions, fmt, batch_size, max_length))

    def _encode(self, prompts: list[str], completions: list[str], fmt: InputFormat, max_length: int) -> Any:
        kw: dict[str, Any] = {"padding": True, "truncation": True, "max_length": max_length, "return_tensors": "pt"}
        if fmt == "pair":
            return self.tokenizer(prompts, completions, **kw)
        if fmt == "chat":
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False
                )
                for p, c in zip(prompts, completions, strict=True)
            ]
            return self.tokenizer(texts, add_special_tokens=False, **kw)
        return self.tokenizer(completions, **kw)

    @torch.inference_mode()
    def _forward(
        self, prompts: Sequence[str], completions: Sequence[str], fmt: InputFormat, batch_size: int, max_length: int
    ) -> torch.Tensor:
        out = torch.empty(len(prompts), self.num_labels, dtype=torch.float32)
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        for idx in length_sorted_batches(texts, batch_size):
            enc = self._encode([prompts[i] for i in idx], [completions[i] for i in idx], fmt, max_length)
            out[idx] = self.model(**enc.to(self.device)).logits.float().cpu()
        return out


def shared_classifier(models: ModelCache, spec: str, device: str | None) -> SequenceClassifier:
    return models.get(("sequence-classification", spec, device), lambda: SequenceClassifier(spec, device))


class RewardModelConfig(StrictModel):
    model: str
    """Model spec: a local directory or a hub id of a sequence-classification reward model."""
    label: int | str | None = None
    """Which output to use when the model has several; a one-output model needs none."""
    input: Literal["auto", "pair", "chat"] = "auto"
    """How (question, answer) reaches the model: a text pair (OpenAssistant's RMs), the chat template,
    or ``auto`` (the chat template when the tokenizer has one, else a pair)."""
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(512, ge=8)
    device: str | None = None
    """``cpu``, ``cuda``, ...; default: a GPU when one is visible."""


@register_scorer("reward_model", RewardModelConfig)
def build_reward_model(config: RewardModelConfig, *, models: ModelCache) -> Scorer:
    """Score = the reward model's logit for (prompt, completion)."""
    clf = shared_classifier(models, config.model, config.device)
    if config.label is None and clf.num_labels != 1:
        raise UserError(f"reward model '{config.model}' has {clf.num_labels} outputs: set 'label' to choose one")
    index = 0 if config.label is None else clf.label_index(config.label)
    fmt = clf.resolve_format(config.input)

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        logits = clf.logits(prompts, completions, fmt, config.batch_size, config.max_length)
        return logits[:, index].tolist()

    return score


class ClassifierConfig(StrictModel):
    model: str
    """Model spec: a local directory or a hub id of a sequence-classification model."""
    label: int | str
    """The label whose probability is the score: a name from the model's ``id2label`` or an index."""
    complement: bool = False
    """Score ``1 - P(label)`` instead (fluency = 1 - P(disfluent))."""
    input: InputFormat = "completion"
    """What the classifier reads: the completion alone, a (prompt, completion) pair, or a chat."""
    activation: Literal["auto", "softmax", "sigmoid"] = "auto"
    """``auto``: sigmoid for multi-label models (``problem_type``), else softmax over the labels."""
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(512, ge=8)
    device: str | None = None


@register_scorer("classifier", ClassifierConfig)
def build_classifier(config: ClassifierConfig, *, models: ModelCache) -> Scorer:
    """Score = P(label | text), or its complement, in [0, 1]."""
    clf = shared_classifier(models, config.model, config.device)
    index = clf.label_index(config.label)
    activation = config.activation
    if activation == "auto":
        multi = getattr(clf.model.config, "problem_type", None) == "multi_label_classification"
        activation = "sigmoid" if multi or clf.num_labels == 1 else "softmax"

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        logits = clf.logits(prompts, completions, config.input, config.batch_size, config.max_length)
        probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)
        p = probs[:, index]
        return (1.0 - p if config.complement else p).tolist()

    return score
