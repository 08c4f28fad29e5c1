"""Data: the built-in instruction-following task suite, its constraints and dimensions, best-of-n sets.

``load_records(spec, split)`` is the entry point other stages call.
"""

from moalign.data.constraints import (
    CONSTRAINTS,
    ConstraintResult,
    check_constraint,
    check_constraints,
    constraint_instruction,
    parse_constraints,
)
from moalign.data.dimensions import DIMENSIONS, Dimension, requested_intensity
from moalign.data.prompts import SPLITS, generate_prompts, topic_split
from moalign.data.sources import BUILTIN_DATASETS, as_dataset, load_records

__all__ = [
    "BUILTIN_DATASETS",
    "CONSTRAINTS",
    "DIMENSIONS",
    "SPLITS",
    "ConstraintResult",
    "Dimension",
    "as_dataset",
    "check_constraint",
    "check_constraints",
    "constraint_instruction",
    "generate_prompts",
    "load_records",
    "parse_constraints",
    "requested_intensity",
    "topic_split",
]
