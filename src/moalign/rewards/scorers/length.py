"""The ``length`` scorer: completion length in words, tokens or characters, optionally against a target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.rewards.scorers.base import ModelCache, Scorer, register_scorer

Penalty = Literal["absolute", "over", "over_squared"]


class LengthConfig(StrictModel):
    unit: Literal["words", "tokens", "characters"] = "words"
    """Words are whitespace-separated; tokens come from ``tokenizer`` (no special tokens)."""
    tokenizer: str = "builtin:smollm2-135m-instruct"
    """Model spec whose tokenizer counts tokens (``unit: tokens`` only); default: the default policy's."""
    target: float | None = Field(None, ge=0)
    """A fixed target length; with a target the score is a penalty (see ``penalty``)."""
    target_column: str | None = None
    """A dataset column with a per-sample target: a number, or a text (e.g. the reference answer)
    whose length in the same unit is the target (seed 004's dynamic length penalty)."""
    penalty: Penalty = "absolute"
    """With a target T and length L: ``absolute`` = -|L - T|, ``over`` = -max(0, L - T),
    ``over_squared`` = -max(0, L - T)^2 (seed 004's penalty, per sample)."""

    @model_validator(mode="after")
    def _one_target(self) -> LengthConfig:
        if self.target is not None and self.target_column is not None:
            raise ValueError("set either target or target_column, not both")
        return self


def length_penalty(length: float, target: float, penalty: Penalty) -> float:
    """The score for ``length`` against ``target`` (0 at the target, negative when penalised)."""
    if penalty == "absolute":
        return -abs(length - target)
    over = max(0.0, length - target)
    return -over if penalty == "over" else -(over**2)


@register_scorer("length", LengthConfig)
def build_length(config: LengthConfig, *, models: ModelCache) -> Scorer:
    """Score = length, or a penalty against the target; an empty completion has length 0."""
    if config.unit == "tokens":
        from moalign.models import load_tokenizer

        tokenizer = models.get(("tokenizer", config.tokenizer), lambda: load_tokenizer(config.tokenizer))

        def measure(texts: list[str]) -> list[int]:
            return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    elif config.unit == "words":

        def measure(texts: list[str]) -> list[int]:
            return [len(t.split()) for t in texts]

    else:

        def measure(texts: list[str]) -> list[int]:
            return [len(t) for t in texts]

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        lengths = measure(list(completions))
        if config.target is not None:
            return [length_penalty(n, config.target, config.penalty) for n in lengths]
        if config.target_column is None:
            return [float(n) for n in lengths]
        if config.target_column not in columns:
            raise UserError(f"length scorer: no column '{config.target_column}' in the data")
        raw = list(columns[config.target_column])
        texts = [v for v in raw if isinstance(v, str)]
        text_lengths = iter(measure(texts))
        targets = [float(next(text_lengths)) if isinstance(v, str) else float(v) for v in raw]
        return [length_penalty(n, t, config.penalty) for n, t in zip(lengths, targets, strict=True)]

    return score
