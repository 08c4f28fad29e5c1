"""Scorers: one score per (prompt, completion) for one objective. Importing this package registers them."""

from moalign.rewards.scorers.base import SCORERS, ModelCache, Scorer, ScorerDef, register_scorer

# Each module registers its scorers on import.
from moalign.rewards.scorers import (  # noqa: E402, F401  isort: skip
    dimensions,
    length,
    multihead,
    perplexity,
    python_function,
    relevance,
    repetition,
    sequence_classification,
    verifier,
)

__all__ = ["SCORERS", "ModelCache", "Scorer", "ScorerDef", "register_scorer"]
