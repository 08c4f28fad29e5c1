"""The ``repetition`` scorer: the share of repeated n-grams, to catch degenerate loops.

Seed 004 reports a small model echoing "Confidence: 95%" dozens of times; such a completion has a
high share of n-grams that already occurred earlier in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from moalign.config.base import StrictModel
from moalign.rewards.scorers.base import Scorer, register_scorer


class RepetitionConfig(StrictModel):
    n: int = Field(3, ge=1)
    """n-gram size."""
    unit: Literal["words", "characters"] = "words"
    lowercase: bool = True


def repeated_ngram_share(items: Sequence[str], n: int) -> float:
    """``(total - distinct) / total`` over the n-grams of ``items``; 0 when there is no n-gram.

    Each occurrence of an n-gram after its first counts as repeated: 1 - distinct/total.
    """
    grams = [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


@register_scorer("repetition", RepetitionConfig)
def build_repetition(config: RepetitionConfig) -> Scorer:
    """Score = share of repeated n-grams in [0, 1) (higher is worse: give it a negative weight or ideal 0)."""

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        out = []
        for text in completions:
            text = text.lower() if config.lowercase else text
            items = text.split() if config.unit == "words" else list(text)
            out.append(repeated_ngram_share(items, config.n))
        return out

    return score
