"""The multi-objective reward layer: scorers, the score matrix, aggregators and the MOSLIM mapping.

Stable public names: :func:`aggregate`, :class:`MoslimMapper`, :class:`MultiObjectiveReward` (the
object that builds the ``[B, k]`` score matrix from :class:`ObjectiveConfig` entries) and its :class:`ScoreMatrix`.
"""

from moalign.rewards.aggregators import AGGREGATORS, aggregate
from moalign.rewards.moslim import MoslimMapper
from moalign.rewards.objectives import MultiObjectiveReward, ObjectiveConfig, ScoreError, ScoreMatrix
from moalign.rewards.scorers import SCORERS, ModelCache, register_scorer

__all__ = [
    "AGGREGATORS",
    "SCORERS",
    "ModelCache",
    "MoslimMapper",
    "MultiObjectiveReward",
    "ObjectiveConfig",
    "ScoreError",
    "ScoreMatrix",
    "aggregate",
    "register_scorer",
]
