"""The prompt generator of the built-in task suite: topic x task template x constraints (x tags).

Prompts are drawn deterministically from ``(variant, seed, split)`` (fewer records give a prefix of more).
Topics are split train / validation / test (70 / 15 / 15 %) by a fixed hash; each constraint is asked for in
one of its kind's training wordings in train, one of its held-out wordings (no phrase shared) in validation
and test, so the test split measures following the request on unseen topics in unseen words. Variants:
``constraints`` (1-3 constraints per prompt), ``tagged`` (``<brevity n><structure m>``, plus <= 1 constraint).

Notes: docs/papers.md#datapromptspy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from moalign.data.constraints import CONSTRAINTS, compatible, constraint_instruction
from moalign.data.dimensions import DIMENSIONS, LEVELS
from moalign.data.topics import TASK_TEMPLATES, TOPICS
from moalign.tags import format_tags, tag_column

SPLITS = ("train", "validation", "test")
Variant = Literal["constraints", "tagged"]


def topic_split(topic: str) -> str:
    """The split a topic belongs to: a fixed hash bucket, 70 % train, 15 % validation, 15 % test."""
    bucket = int.from_bytes(hashlib.sha256(topic.encode("utf-8")).digest()[:4], "big") % 100
    return "train" if bucket < 70 else ("validation" if bucket < 85 else "test")


def split_topics(split: str) -> list[str]:
    """The topics of one split, in table order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [t for t in TOPICS if topic_split(t) == split]


def _sample_constraints(
    rng: random.Random,
    keywords: tuple[str, ...],
    count: int,
    *,
    tagged: bool,
    among: Sequence[str] | None = None,
) -> list[dict]:
    kinds: list[str] = []
    names = [
        k
        for k in (CONSTRAINTS.names() if among is None else among)
        if not (tagged and CONSTRAINTS.get(k).shapes_response)
    ]
    while len(kinds) < count:
        options = [k for k in names if compatible(kinds, k)]
        if not options:
            break
        kinds.append(rng.choice(options))
    return [{"kind": k, **CONSTRAINTS.get(k).sample(rng, {"keywords": keywords})} for k in kinds]


def _sample_tags(rng: random.Random) -> dict[str, int | None]:
    names = sorted(DIMENSIONS)
    chosen = set(rng.sample(names, rng.randint(1, len(names))))
    return {name: (rng.choice(LEVELS) if name in chosen else None) for name in names}


def _request(wording_rng: random.Random, constraint: dict[str, Any], held_out: bool) -> str:
    """The constraint asked for in one of its kind's wordings (training or held-out), drawn from ``wording_rng``."""
    variants = len(CONSTRAINTS.get(constraint["kind"]).wordings(held_out))
    return constraint_instruction(constraint, held_out=held_out, variant=wording_rng.randrange(variants))


def _task_text(
    wording_rng: random.Random, topic: str, task: str, constraints: list[dict[str, Any]], held_out: bool
) -> str:
    """The task sentence for ``topic`` followed by each constraint's request (:func:`_request`)."""
    requests = [_request(wording_rng, c, held_out) for c in constraints]
    return " ".join([TASK_TEMPLATES[task].format(topic=topic), *requests])


def _draw(
    rng: random.Random, wording_rng: random.Random, topics: list[str], variant: Variant, held_out: bool
) -> dict[str, Any]:
    topic = rng.choice(topics)
    task = rng.choice(sorted(TASK_TEMPLATES))
    tagged = variant == "tagged"
    if tagged:
        tags = _sample_tags(rng)
        constraints = _sample_constraints(rng, TOPICS[topic], rng.choice((0, 1)), tagged=True)
    else:
        tags = dict.fromkeys(sorted(DIMENSIONS))
        constraints = _sample_constraints(rng, TOPICS[topic], rng.choice((1, 1, 2, 2, 3)), tagged=False)
    text = _task_text(wording_rng, topic, task, constraints, held_out)
    prefix = format_tags({name: level for name, level in tags.items() if level is not None})
    return {
        "prompt": f"{prefix} {text}" if prefix else text,
        "topic": topic,
        "task": task,
        "constraints": constraints,
        **{tag_column(name): level for name, level in tags.items()},
    }


def reconstrained(record: Mapping[str, Any], key: str, among: Sequence[str] | None = None) -> dict[str, Any] | None:
    """``record``'s topic and task asked with other constraints (1-3, as the suite draws them, of the kinds
    ``among``; None: any), each in one of its kind's training wordings, drawn deterministically from ``key``;
    None where the record has no suite topic and task (a prompt read from a file)."""
    topic, task = record.get("topic"), record.get("task")
    if topic not in TOPICS or task not in TASK_TEMPLATES:
        return None
    rng = random.Random(f"moalign-reconstrained/{key}")
    constraints = _sample_constraints(rng, TOPICS[topic], rng.choice((1, 1, 2, 2, 3)), tagged=False, among=among)
    text = _task_text(rng, topic, task, constraints, held_out=False)
    return {"prompt": text, "topic": topic, "task": task, "constraints": constraints}


def iter_prompts(split: str, *, seed: int = 0, variant: Variant = "constraints") -> Iterator[dict[str, Any]]:
    """Distinct prompt records of ``split``, in a fixed order for ``(variant, seed, split)``; endless
    until the space of prompts is exhausted (far beyond any size used here). The wordings are drawn from
    a stream of their own, so topics, tasks and constraints are those the same seed gave with one wording."""
    topics = split_topics(split)
    rng = random.Random(f"moalign-tasks/{variant}/{seed}/{split}")
    wording_rng = random.Random(f"moalign-wordings/{variant}/{seed}/{split}")
    seen: set[str] = set()
    misses = 0
    while misses < 1000:
        record = _draw(rng, wording_rng, topics, variant, held_out=split != "train")
        if record["prompt"] in seen:
            misses += 1
            continue
        misses = 0
        seen.add(record["prompt"])
        yield {"id": f"{split}-{len(seen) - 1:05d}", "split": split, **record}


def generate_prompts(split: str, num: int, *, seed: int = 0, variant: Variant = "constraints") -> list[dict[str, Any]]:
    """The first ``num`` records of :func:`iter_prompts`."""
    out: list[dict[str, Any]] = []
    for record in iter_prompts(split, seed=seed, variant=variant):
        if len(out) >= num:
            break
        out.append(record)
    return out
