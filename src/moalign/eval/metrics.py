"""Evaluation arithmetic as pure functions: win rate with ties, bootstrap intervals, BLEU, perplexity and
length statistics (Spearman correlation: :mod:`moalign.correlation`).

Readings taken where the papers are vague:
- **win rate** (seed 000, section 5): a tie counts half a win and is reported; NaN prompts are left out of N;
- **BLEU-n** (seed 004, section 4.5): sacrebleu's corpus BLEU, uniform weights over 1..n-grams, scale 0-100;
- **perplexity** (seed 004, section 4.5): per token over the whole set, ``exp(sum_i sum_t nll / sum_i T_i)``.

Reading notes: docs/papers.md#evalmetricspy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers and not NaN."""
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def mean(values: Sequence[float | None]) -> float | None:
    """Mean over the finite values; None when there are none."""
    xs = finite(values)
    return sum(xs) / len(xs) if xs else None


def pair_outcomes(candidate: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Per prompt: 1 if ``candidate > reference``, 0.5 on a tie, 0 if it loses; pairs with a NaN are dropped."""
    if len(candidate) != len(reference):
        raise ValueError(f"{len(candidate)} candidate scores but {len(reference)} reference scores")
    out = []
    for c, r in zip(candidate, reference, strict=True):
        if c is None or r is None or math.isnan(c) or math.isnan(r):
            continue
        out.append(1.0 if c > r else 0.5 if c == r else 0.0)
    return out


@dataclass(frozen=True)
class WinRate:
    """Wins, ties and losses of a candidate against a reference over ``n`` judged prompts.

    ``rate = (wins + ties / 2) / n``; ``interval`` is a bootstrap confidence interval on the rate.
    """

    wins: int
    ties: int
    losses: int
    n: int
    rate: float | None
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out


def win_rate(
    candidate: Sequence[float],
    reference: Sequence[float],
    *,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> WinRate:
    """Win rate of ``candidate`` over ``reference`` (scores per prompt, same order), ties counted half,
    with a percentile-bootstrap interval over prompts (see :func:`bootstrap_interval`)."""
    outcomes = pair_outcomes(candidate, reference)
    n = len(outcomes)
    wins, ties = outcomes.count(1.0), outcomes.count(0.5)
    rate = (wins + 0.5 * ties) / n if n else None
    interval = None
    if n:
        interval = bootstrap_interval(outcomes, num_resamples=num_resamples, confidence=confidence, seed=seed)
    return WinRate(wins=wins, ties=ties, losses=n - wins - ties, n=n, rate=rate, interval=interval)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values, ``0 <= q <= 1``."""
    if not sorted_values:
        raise ValueError("quantile of an empty sequence")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_interval(
    values: Sequence[float], *, num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample ``values`` with replacement ``num_resamples``
    times, take each resample's mean, return the ``(1-c)/2`` and ``(1+c)/2`` quantiles of those means.

    The width shrinks like ``1/sqrt(N)``. The interval is widened, if needed, to hold the sample mean
    (a percentile interval can miss it by a hair for skewed data).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("bootstrap of an empty sequence")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(sum(rng.choices(xs, k=n)) / n for _ in range(num_resamples))
    point = sum(xs) / n
    low = quantile(means, (1 - confidence) / 2)
    high = quantile(means, (1 + confidence) / 2)
    return min(low, point), max(high, point)


def bleu_scores(
    hypotheses: Sequence[str], references: Sequence[str], orders: Sequence[int] = (1, 2, 4)
) -> dict[str, float]:
    """Corpus BLEU-n for each ``n`` in ``orders`` (sacrebleu, default tokenizer ``13a``, 0-100), as
    ``{"bleu1": ..., "bleu2": ..., "bleu4": ...}``. BLEU-n is the brevity penalty times the geometric
    mean of the modified 1..n-gram precisions."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    refs = [list(references)]
    return {f"bleu{n}": float(BLEU(max_ngram_order=n).corpus_score(list(hypotheses), refs).score) for n in orders}


def corpus_perplexity(mean_nlls: Sequence[float], num_tokens: Sequence[int]) -> float:
    """``exp(sum_i T_i * nll_i / sum_i T_i)`` from each sequence's mean token NLL ``nll_i`` over ``T_i`` tokens."""
    if len(mean_nlls) != len(num_tokens):
        raise ValueError(f"{len(mean_nlls)} NLLs but {len(num_tokens)} token counts")
    total = sum(num_tokens)
    if total <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(sum(m * t for m, t in zip(mean_nlls, num_tokens, strict=True)) / total)


def length_stats(lengths: Sequence[float]) -> dict[str, float | None]:
    """``mean``, ``median``, ``std`` (population), ``min``, ``max`` of response lengths."""
    xs = sorted(float(v) for v in lengths)
    if not xs:
        return {"mean": None, "median": None, "std": None, "min": None, "max": None}
    m = sum(xs) / len(xs)
    return {
        "mean": m,
        "median": quantile(xs, 0.5),
        "std": math.sqrt(sum((v - m) ** 2 for v in xs) / len(xs)),
        "min": xs[0],
        "max": xs[-1],
    }
