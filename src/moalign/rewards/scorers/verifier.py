"""The ``verifier`` scorer: the share of a record's verifiable constraints that a completion satisfies.

Reads the ``constraints`` column (a list of constraint dicts or its JSON string, see
:mod:`moalign.data.constraints`). NaN where the record has no constraints (the objective does not apply).
With ``partial: true`` the score is the mean of the constraints' partial-credit scores instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moalign.config.base import StrictModel
from moalign.data.constraints import check_constraints, parse_constraints
from moalign.rewards.scorers.base import register_scorer


class VerifierConfig(StrictModel):
    """``partial``: mean partial credit instead of the share strictly satisfied; ``column``: where constraints are."""

    partial: bool = False
    column: str = "constraints"


def constraint_share(completion: str, constraints: Any, *, partial: bool = False, source: str = "constraints") -> float:
    """Share of ``constraints`` satisfied by ``completion`` (mean partial score with ``partial``); NaN if none."""
    parsed = parse_constraints(constraints, source=source)
    if not parsed:
        return float("nan")
    results = check_constraints(completion, parsed)
    values = [r.score if partial else float(r.satisfied) for r in results]
    return sum(values) / len(values)


@register_scorer("verifier", VerifierConfig, partial=True)
def build_verifier(config: VerifierConfig) -> Any:
    def verifier(prompts: Sequence[str], completions: Sequence[str], **columns: Sequence[Any]) -> list[float]:
        column = columns.get(config.column)
        if column is None:
            return [float("nan")] * len(completions)
        return [
            constraint_share(c, column[i], partial=config.partial, source=f"{config.column}[{i}]")
            for i, c in enumerate(completions)
        ]

    return verifier
