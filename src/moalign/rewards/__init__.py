"""The multi-objective reward layer: scorers, the score matrix, aggregators and the MOSLIM mapping.

Stable public names: :func:`aggregate`, :class:`MoslimMapper`, :class:`MultiObjectiveReward` (the
object that builds the ``[B, k]`` score matrix) and its :class:`ScoreMatrix`.
"""

from moalign.rewards.aggregators import AGGREGATORS, aggregate
from moalign.rewards.moslim import MoslimMapper
from moalign.rewards.objectives import MultiObjectiveReward, ScoreError, ScoreMatrix
from moalign.rewards.scorers import SCORERS, ModelCache, register_scorer

__all__ = [
    "AGGREGATORS",
    "SCORERS",
    "ModelCache",
    "MoslimMapper",
    "MultiObjectiveReward",
    "ScoreError",
    "ScoreMatrix",
    "aggregate",
    "register_scorer",
]
