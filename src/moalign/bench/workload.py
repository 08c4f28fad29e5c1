"""The benchmark's data: built-in task-suite prompts and preference pairs of controlled length.

Every comparison runs both sides on the same records. Responses are deterministic filler of
``seed``-drawn length (a forward pass costs the same whatever the words), so the lengths, and with
them the padding a batch carries, vary as in real preference data.
"""

from __future__ import annotations

import random
from typing import Any

from moalign.data.prompts import generate_prompts

_WORDS = (
    "the model answers each question clearly and briefly with one example a list of steps "
    "because users prefer short structured replies that follow every stated constraint"
).split()


def bench_prompts(num: int, *, seed: int = 0) -> list[str]:
    """``num`` prompts of the built-in task suite (train split)."""
    return [record["prompt"] for record in generate_prompts("train", num, seed=seed)]


def filler(rng: random.Random, words: int) -> str:
    """``words`` words drawn from a fixed list, as one sentence."""
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def bench_pairs(num: int, *, min_words: int = 20, max_words: int = 70, seed: int = 0) -> list[dict[str, Any]]:
    """``num`` preference records ``{prompt, chosen, rejected}`` with responses of
    ``min_words``..``max_words`` words each."""
    rng = random.Random(f"moalign-bench/{seed}")
    return [
        {
            "prompt": prompt,
            "chosen": filler(rng, rng.randint(min_words, max_words)),
            "rejected": filler(rng, rng.randint(min_words, max_words)),
        }
        for prompt in bench_prompts(num, seed=seed)
    ]
