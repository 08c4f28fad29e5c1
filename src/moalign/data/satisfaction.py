"""Constraint-satisfaction rates of responses to task-suite prompts, and the base-model measurement.

Three rates, as in IFEval: **prompt-level** (share of prompts whose constraints are *all* satisfied),
**constraint-level** (share of all constraints satisfied) and the mean **partial** credit, plus the
constraint-level rate per kind. Records without constraints are left out.

``moalign satisfaction --limit 100`` measures a model with greedy decoding on the test split (the
number the README reports for the base model).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from moalign.data.constraints import ConstraintResult, check_constraints, parse_constraints


def satisfaction_rates(results: Sequence[Sequence[ConstraintResult]]) -> dict[str, Any]:
    """Rates over responses, given each response's constraint results (empty lists are skipped)."""
    judged = [r for r in results if r]
    flat = [c for r in judged for c in r]
    per_kind: dict[str, list[ConstraintResult]] = defaultdict(list)
    for c in flat:
        per_kind[c.kind].append(c)
    return {
        "prompts": len(judged),
        "constraints": len(flat),
        "prompt_level": _mean([float(all(c.satisfied for c in r)) for r in judged]),
        "constraint_level": _mean([float(c.satisfied) for c in flat]),
        "partial": _mean([c.score for c in flat]),
        "per_kind": {
            kind: {
                "n": len(cs),
                "satisfied": _mean([float(c.satisfied) for c in cs]),
                "partial": _mean([c.score for c in cs]),
            }
            for kind, cs in sorted(per_kind.items())
        },
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def record_results(records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[list[ConstraintResult]]:
    """Each response checked against its record's constraints."""
    if len(records) != len(responses):
        raise ValueError("one response per record")
    return [
        check_constraints(resp, parse_constraints(rec.get("constraints"), source=f"record {rec.get('id', i)}"))
        for i, (rec, resp) in enumerate(zip(records, responses, strict=True))
    ]


def measure_constraint_satisfaction(
    model: str = "builtin:smollm2-135m-instruct",
    dataset: str = "builtin:ifeval-lite",
    split: str = "test",
    *,
    limit: int | None = 100,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    responses_path: str | None = None,
) -> dict[str, Any]:
    """Greedy-decode ``model`` on ``split`` of ``dataset`` and return the satisfaction rates and settings.

    ``responses_path``: also write every prompt, response and constraint result there as JSONL.
    """
    from moalign.atomic import atomic_write_text
    from moalign.data.sources import load_records
    from moalign.generation import SamplingConfig, generate
    from moalign.models import load_causal_lm, load_tokenizer

    records = [r for r in load_records(dataset, split, limit=limit) if r.get("constraints")]
    tokenizer, lm = load_tokenizer(model), load_causal_lm(model)
    t0 = time.time()
    generations = generate(
        lm,
        tokenizer,
        [r["prompt"] for r in records],
        SamplingConfig(max_new_tokens=max_new_tokens),
        batch_size=batch_size,
        desc="measuring",
    )
    wall = time.time() - t0
    responses = [g[0].text for g in generations]
    results = record_results(records, responses)
    if responses_path:
        lines = [
            json.dumps(
                {
                    "id": rec.get("id"),
                    "prompt": rec["prompt"],
                    "response": resp,
                    "constraints": [c.to_dict() for c in res],
                }
            )
            for rec, resp, res in zip(records, responses, results, strict=True)
        ]
        atomic_write_text(responses_path, "\n".join(lines) + "\n")
    tokens = sum(g[0].num_tokens for g in generations)
    return {
        "model": model,
        "dataset": dataset,
        "split": split,
        "decoding": "greedy",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "generation_s": round(wall, 1),
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "truncated": sum(g[0].num_tokens >= max_new_tokens for g in generations),
        **satisfaction_rates(results),
    }
