"""The ``best_of_n`` stage: sample n responses per prompt, score them, write SFT, preference and rating sets.

The offline stand-in for Smoltalk (SFT: the best response per prompt) and UltraFeedback (pairs: best versus
worst), plus the rating labels the multi-head reward model trains on (:mod:`moalign.data.ratings`). It trains
nothing. It writes ``samples.jsonl``, ``sft.jsonl``, ``pairs.jsonl``, ``ratings.jsonl`` and ``constraints.json``.
Samples are scored by the recipe's aggregated reward (without objectives: ``verifier``, ``brevity`` and
``structure`` summed); the best and worst samples of a prompt have the highest and lowest reward.

Notes: docs/papers.md#stagesbest_of_npy (the output files' fields).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from moalign.atomic import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from moalign.budget import sampling_budget
from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, plugin_spec
from moalign.data.constraints import CONSTRAINTS, check_constraints, parse_constraints, repair_response
from moalign.data.dimensions import (
    DIMENSIONS,
    LEVELS,
    layout_variants,
    relabel_prompt,
    sentence_prefixes,
    spell_out_tags,
    spread_requests,
)
from moalign.data.pairs import PreferencePair, best_index, best_worst_pair, farthest_index, level_distance
from moalign.data.prompts import reconstrained
from moalign.data.ratings import bin_score, rating_record, rebin_level
from moalign.data.satisfaction import satisfaction_rates
from moalign.data.sources import load_records
from moalign.errors import UserError
from moalign.eval.generations import CachedGeneration
from moalign.rewards import MultiObjectiveReward
from moalign.rewards.objectives import DEFAULT_OBJECTIVES, ObjectiveConfig, RewardStage
from moalign.stages.base import StageContext, StageResult, register_stage
from moalign.tags import parse_tags


def _check_dimension(key: str, name: str) -> None:
    """Refuse a tag dimension the task suite does not measure, naming the config key."""
    if name not in DIMENSIONS:
        raise ValueError(f"{key}: unknown dimension {name!r} (known: {', '.join(DIMENSIONS)})")


class BestOfNConfig(StrictModel):
    """Keys of the ``best_of_n`` stage (decoding keys named as in ``transformers.GenerationConfig``)."""

    dataset: str | list[str] = "builtin:ifeval-lite"
    """A prompt source, or a list of them sharing ``num_prompts`` (interleaved)."""
    dataset_weights: list[float] | None = None
    """With a list of sources: each one's share of ``num_prompts``, in proportion (None: even shares); as
    OpenRLHF's ``prompt_data_probs``, but exact counts, not sampling probabilities."""
    split: str = "train"
    num_prompts: int = Field(64, ge=1)
    num_generations: int = Field(4, ge=2)
    """n: responses sampled per prompt."""
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    batch_size: int = Field(8, ge=1)
    """Prompts per generation batch (each yields ``num_generations`` sequences)."""
    bf16: bool | None = None
    """Sample under bf16 autocast; None: where the device runs it natively. The recipe's ``precision``
    overrides it."""
    min_margin: float = Field(0.1, ge=0)
    """Smallest best-minus-worst total score for a preference pair."""
    finished_only: bool = False
    """Only samples that ended by themselves (an end-of-turn token within ``max_new_tokens``) become SFT
    targets or the chosen side of a pair: a response cut off by the budget would teach the policy to stop
    mid-sentence. A truncated sample may still be a pair's rejected side. Needs a budget in which the
    model finishes its answers (``data/truncated`` in the stage's summary counts the cut-off samples)."""
    min_score: float | None = None
    """Only samples whose total score reaches this become SFT targets or a pair's chosen side (rejection
    sampling); None keeps the best of each prompt whatever its score."""
    rating_classes: int = Field(5, ge=2, le=10)
    """Intensity classes per rating dimension (5: seed 002's DataType 4; 2: DataType 2)."""
    objectives: list[ObjectiveConfig] | None = None
    """This stage's own ranking objectives (default: the recipe's; the task suite's three if it has none)."""
    aggregator: PluginSpec | None = None
    """With ``objectives``: how they combine (default ``weighted_sum``)."""
    spell_out_tags: bool = False
    """Sample from each prompt with its brevity/structure tags replaced by the plain-language requests
    they stand for (context distillation); the written sets keep the tagged prompt, so SFT and DPO on
    them teach the policy what a tag means without the words."""
    relabel_tags: bool = False
    """Hindsight relabelling of tagged prompts (:func:`moalign.data.dimensions.relabel_prompt`): ``sft.jsonl``
    gets every sample of a tagged prompt, each under the tags of the levels it measures, instead of the
    best one; the prompt's pair contrasts its best sample with the sample whose levels differ most, under
    the best sample's measured tags (``margin`` is then that level distance). Untagged prompts keep
    best/worst."""
    spread_levels: bool = False
    """With ``spell_out_tags``: sample ``j`` of a tagged prompt asks for levels moved ``j`` steps on
    (:func:`moalign.data.dimensions.spread_tags`), so one prompt's samples cover different levels and the
    relabelled pairs contrast responses of one prompt that really differ in what the tags measure."""
    extra_level_samples: dict[str, dict[int, int]] | None = None
    """With ``spread_levels``: tag dimension -> {level: count}: each prompt tagged in that dimension is sampled
    ``count`` more times asking for ``level`` (:func:`moalign.data.dimensions.spread_requests`), beyond its
    ``num_generations``. For levels the model seldom reaches when asked once: asked for one short sentence,
    SmolLM2 answered at most 15 words (or began with such a sentence) in 5 of 15 samples, so the shortest
    level had few distinct targets."""
    sentence_prefixes: bool = False
    """With ``relabel_tags``: each sample of a tagged prompt also contributes its sentence-end prefixes, one
    per level it passes through (:func:`moalign.data.dimensions.sentence_prefixes`), as extra candidates
    marked ``"augmented": "sentence_prefix"``. This is augmentation: the model wrote the words but did not
    stop there; a truncated sample's prefixes are finished by construction, and its longest prefix at its
    own level is one too (the longest answers are mostly the ones the budget cut)."""
    layout_variants: bool = False
    """With ``relabel_tags``: each sample of a tagged prompt that is prose of four sentences or more also
    contributes its sentences laid out at the other structure levels (one or two paragraphs, a list, sections
    with headers: :func:`moalign.data.dimensions.layout_variants`), as extra candidates marked
    ``"augmented": "layout"``. Augmentation: the model wrote the sentences, not the layout; it gives every
    structure level targets, and pairs of one response in two layouts, which only the structure tag tells
    apart."""
    repair_constraints: bool = False
    """Each finished sample of a prompt with constraints that fails some of them also contributes its repaired
    text, where every failed constraint has a repair (lower or upper case, commas dropped, the start or end
    phrase or the quotes added, its sentences laid out as a list, paragraphs, sections, a postscript or JSON,
    or cut to the first ones that fit a length: :func:`moalign.data.constraints.repair_response`), as an extra
    candidate marked ``"augmented": "repair"``. Augmentation: the words are the model's, the edit is a rule's;
    it gives format constraints the base model rarely meets targets, and pairs of one response with and
    without the requested form (each repaired text against its sample, before the prompt's best/worst pair)."""
    reconstrained_targets: int = Field(0, ge=0)
    """Each finished sample of a suite prompt (one with a topic and a task) also becomes the target of this many
    other prompts: its topic and task asked with other constraints of the kinds a rule can repair, in training
    wordings (:func:`moalign.data.prompts.reconstrained`): the sample as drawn where it meets them, else its
    repaired text. SFT rows only, marked ``"augmented": "reconstrained"``, ``score`` None (the recipe's reward
    did not rank them); no pairs, so DPO's budget stays on the sampled prompts' contrasts. Augmentation: the
    words are the model's, the request was written after them; it gives every constraint kind many targets
    whatever the few prompts drawn happened to ask."""
    targets_per_prompt: int = Field(1, ge=1)
    """SFT targets per untagged prompt: its best eligible candidates with distinct texts, best first."""
    pairs_per_prompt: int = Field(1, ge=1)
    """With ``relabel_tags``: contrastive pairs per tagged prompt: each of the best-scoring eligible
    candidates against the candidate whose levels differ most, under its own measured tags."""
    mirror_pairs: bool = False
    """With ``relabel_tags``: each contrastive pair comes with its mirror (the same two responses swapped,
    under the other's measured tags), so a pair can only be told from its mirror by the tags."""
    one_dimension_pairs: bool = False
    """With ``mirror_pairs``: contrast two samples that differ in exactly one tagged dimension, taking the
    dimensions in turn (:func:`one_dimension_pairs`), instead of the samples whose levels differ most (which
    mostly contrast lengths, the dimension samples vary most in)."""

    balance_levels: dict[str, int] | None = None
    """With ``relabel_tags``: tag dimension -> the most times one tagged SFT row is written for it
    (``{brevity: 4}``; None: each row once). The rows of levels that few samples reached are repeated (up
    to that many times each) until every level of each named dimension has about as many rows as its most
    frequent one (:func:`balanced_copies`; copies marked ``"repeat": n``). Sampled answers are mostly of a
    few middle levels; without it SFT sees few rows of the others and learns to answer at a middle level
    whatever the tag asks."""

    @field_validator("balance_levels")
    @classmethod
    def _balanced_dimensions(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for name, cap in (value or {}).items():
            _check_dimension("balance_levels", name)
            if cap < 1:
                raise ValueError(f"balance_levels: {name}: the most copies of a row must be >= 1, got {cap}")
        return value

    @field_validator("extra_level_samples")
    @classmethod
    def _extra_levels(cls, value: dict[str, dict[int, int]] | None) -> dict[str, dict[int, int]] | None:
        for name, counts in (value or {}).items():
            _check_dimension("extra_level_samples", name)
            for level, count in counts.items():
                if level not in LEVELS or count < 1:
                    raise ValueError(
                        f"extra_level_samples: {name}: levels are 1-5 and counts >= 1, got {level}: {count}"
                    )
        return value

    @model_validator(mode="after")
    def _one_weight_per_source(self) -> BestOfNConfig:
        if self.dataset_weights is not None:
            sources = [self.dataset] if isinstance(self.dataset, str) else self.dataset
            if len(self.dataset_weights) != len(sources):
                raise ValueError(f"dataset_weights has {len(self.dataset_weights)} weights for {len(sources)} datasets")
            if min(self.dataset_weights) <= 0:
                raise ValueError("dataset_weights must all be > 0")
        return self

    @model_validator(mode="after")
    def _switches_need_their_base(self) -> BestOfNConfig:
        """A switch that only acts on top of another one is refused without it (it would be ignored)."""
        needs = {
            "spread_levels": ("spell_out_tags",),
            "extra_level_samples": ("spread_levels",),
            "sentence_prefixes": ("relabel_tags",),
            "layout_variants": ("relabel_tags",),
            "mirror_pairs": ("relabel_tags",),
            "one_dimension_pairs": ("relabel_tags", "mirror_pairs"),
            "balance_levels": ("relabel_tags",),
        }
        for switch, bases in needs.items():
            missing = [b for b in bases if not getattr(self, b)]
            if getattr(self, switch) and missing:
                raise ValueError(f"{switch} needs {' and '.join(f'{b}: true' for b in missing)}")
        return self

    @field_validator("aggregator", mode="before")
    @classmethod
    def _aggregator(cls, raw: Any) -> PluginSpec | None:
        from moalign.rewards.aggregators import AGGREGATORS

        return None if raw is None else plugin_spec(AGGREGATORS, raw)


def build_reward(ctx: RewardStage, config: BestOfNConfig) -> MultiObjectiveReward:
    """The ranking reward: the stage's objectives, else the recipe's, else the task suite's defaults."""
    if config.objectives:
        return MultiObjectiveReward.for_stage(ctx, config.objectives, config.aggregator or "weighted_sum")
    if ctx.recipe.objectives:
        return MultiObjectiveReward.for_stage(ctx)
    return MultiObjectiveReward(DEFAULT_OBJECTIVES, "weighted_sum", tag_dimensions=ctx.recipe.tag_dimensions)


def prompt_shares(num: int, weights: Sequence[float]) -> list[int]:
    """``num`` split in proportion to ``weights`` by largest remainders (ties to the first sources)."""
    exact = [num * w / sum(weights) for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: num - sum(shares)]:
        shares[i] += 1
    return shares


def mixed_records(
    datasets: str | Sequence[str], split: str, num: int, weights: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """``num`` prompt records drawn from ``datasets`` in proportion to ``weights`` (even without), interleaved;
    with several sources, each record's ``id`` is prefixed by its source's position (``1:train-00003``)."""
    specs = [datasets] if isinstance(datasets, str) else list(datasets)
    if not specs:
        raise UserError("best_of_n: 'dataset' is an empty list")
    shares = prompt_shares(num, weights or [1.0] * len(specs))
    parts = [load_records(spec, split, limit=share) for spec, share in zip(specs, shares, strict=True)]
    if len(specs) > 1:
        parts = [[{**r, "id": f"{i}:{r.get('id')}"} for r in part] for i, part in enumerate(parts)]
    mixed = [r for group in itertools.zip_longest(*parts) for r in group if r is not None]
    return mixed


def sample_ratings(
    response: str, scores: Mapping[str, float], objectives: Sequence[ObjectiveConfig], num_classes: int
) -> dict[str, int | None]:
    """Rating labels of one sample: the measured level of each controllable dimension and the binned
    score of each other objective (scores in [0, 1] cut into ``num_classes`` classes)."""
    ratings: dict[str, int | None] = {
        name: rebin_level(dim.measure(response), len(LEVELS), num_classes) for name, dim in DIMENSIONS.items()
    }
    for o in objectives:
        if o.scorer.type not in DIMENSIONS and o.name not in ratings:
            ratings[o.name] = bin_score(scores[o.name], num_classes)
    return ratings


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return round(sum(finite) / len(finite), 4) if finite else None


SAMPLED_SO_FAR = "sampled.partial.jsonl"
"""The stage's progress: one line per prompt whose samples are drawn, appended batch by batch and deleted
once the stage's outputs are written; a resumed stage samples only the prompts not in it."""


def batch_seed(seed: int, batch: int) -> int:
    """The sampling seed of prompt batch ``batch``: each batch has its own, so a resumed stage draws the
    same samples for the batches it has left as an uninterrupted one."""
    return seed * 1_000_003 + batch


def sample_batches(
    generate_batch: Callable[[list[int]], list[list[CachedGeneration]]], size: int, batch_size: int, progress: Path
) -> list[list[CachedGeneration]]:
    """Samples for prompts ``0..size-1``, ``batch_size`` prompts at a time: ``generate_batch(indices)`` draws a
    batch; each batch is appended to ``progress`` as soon as it is done, and batches already there are
    read back instead of drawn again (a torn or partial batch is drawn again)."""
    done = {r["index"]: [CachedGeneration(**g) for g in r["samples"]] for r in read_jsonl(progress)}
    out: list[list[CachedGeneration]] = []
    for start in range(0, size, batch_size):
        indices = list(range(start, min(start + batch_size, size)))
        if not all(i in done for i in indices):
            drawn = generate_batch(indices)
            for i, gens in zip(indices, drawn, strict=True):
                append_jsonl(progress, {"index": i, "samples": [asdict(g) for g in gens]})
                done[i] = gens
        out.extend(done[i] for i in indices)
    return out


def target_scores(scores: Sequence[float], num_tokens: Sequence[int], config: BestOfNConfig) -> list[float]:
    """``scores`` with NaN for the samples that may not be a training target (``finished_only``: a sample
    that used the whole ``max_new_tokens`` budget was cut off; ``min_score``: a total below it)."""
    return [
        math.nan
        if (config.finished_only and n >= config.max_new_tokens)
        or (config.min_score is not None and not s >= config.min_score)
        else s
        for s, n in zip(scores, num_tokens, strict=True)
    ]


def relabelled_pairs(
    texts: Sequence[str],
    levels: Sequence[Mapping[str, int]],
    scores: Sequence[float],
    eligible: Sequence[float],
    k: int,
    mirror: bool = False,
) -> list[PreferencePair]:
    """Up to ``k`` contrastive pairs of one relabelled prompt: the eligible samples, best first, each against
    the sample whose measured ``levels`` differ most (``margin``: that level distance); no pair twice, none
    between equal texts (see ``relabel_tags`` and ``pairs_per_prompt``).

    ``mirror``: only pairs of two eligible samples, each followed by its mirror (the same two responses
    with chosen and rejected swapped, under the other one's tags), so only the tags tell the two pairs
    apart: a preference learner cannot fit them by the responses' content alone.
    """
    order = sorted((i for i, e in enumerate(eligible) if not math.isnan(e)), key=lambda i: (-eligible[i], i))
    pairs: list[PreferencePair] = []
    seen: set[tuple[int, int]] = set()
    for chosen in order:
        if len(pairs) >= k:
            break
        # mirrored: an ineligible sample counts as measuring the anchor's levels, so it is never picked
        options = [lv if not mirror or not math.isnan(eligible[i]) else levels[chosen] for i, lv in enumerate(levels)]
        far = farthest_index(options, chosen, scores)
        if far is None or (chosen, far) in seen or texts[far].strip() == texts[chosen].strip():
            continue
        margin = float(level_distance(levels[chosen], levels[far]))
        for a, b in [(chosen, far), (far, chosen)] if mirror else [(chosen, far)]:
            seen.add((a, b))
            pairs.append(PreferencePair(a, b, margin))
    return pairs


def one_dimension_pairs(
    texts: Sequence[str], levels: Sequence[Mapping[str, int]], eligible: Sequence[float], k: int
) -> list[PreferencePair]:
    """Up to ``k`` mirrored pairs of one relabelled prompt, each of two eligible samples whose measured
    ``levels`` differ in exactly one dimension: the dimensions in turn (alphabetical), within one the
    widest level gap first, then the higher eligible scores; each pair followed by its mirror (``margin``:
    the level gap)."""
    ok = [i for i, e in enumerate(eligible) if not math.isnan(e)]
    by_dim: dict[str, list[tuple[int, float, int, int]]] = {}
    for i, j in itertools.combinations(ok, 2):
        differ = [d for d in levels[i] if levels[i][d] != levels[j].get(d)]
        if len(differ) == 1 and texts[i].strip() != texts[j].strip():
            gap = abs(levels[i][differ[0]] - levels[j][differ[0]])
            by_dim.setdefault(differ[0], []).append((-gap, -(eligible[i] + eligible[j]), i, j))
    queues = [sorted(by_dim[d]) for d in sorted(by_dim)]
    pairs: list[PreferencePair] = []
    while len(pairs) < k and any(queues):
        for queue in queues:
            if queue and len(pairs) < k:
                gap, _, i, j = queue.pop(0)
                pairs += [PreferencePair(i, j, float(-gap)), PreferencePair(j, i, float(-gap))]
    return pairs


def top_targets(texts: Sequence[str], eligible: Sequence[float], k: int) -> list[int]:
    """The ``k`` best eligible candidates with distinct texts (NaN: not eligible), best first, ties by index."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i in sorted((i for i, e in enumerate(eligible) if not math.isnan(e)), key=lambda i: (-eligible[i], i)):
        if len(chosen) < k and texts[i].strip() not in seen:
            seen.add(texts[i].strip())
            chosen.append(i)
    return chosen


def level_histogram(prompts: Sequence[str]) -> dict[str, int]:
    """How many of ``prompts`` carry each level of each brevity/structure tag:
    ``{"data/levels/brevity/1": count, ...}`` (every level present, zeros included, once any prompt is tagged)."""
    tags = [parse_tags(p)[1] for p in prompts]
    return {
        f"data/levels/{d}/{level}": sum(t.get(d) == level for t in tags)
        for d in DIMENSIONS
        if any(d in t for t in tags)
        for level in LEVELS
    }


def balanced_copies(levels: Sequence[Mapping[str, int]], max_copies: Mapping[str, int]) -> list[int]:
    """How many times to write each tagged row so that, in each dimension of ``max_copies`` in turn, every
    level present has about as many rows as its most frequent level (class-balanced oversampling by
    repetition): the rows of a short level get one more copy each in turn, none more than the dimension's
    ``max_copies``. ``levels[i]`` are row ``i``'s measured tags (``{}`` for an untagged row: one copy). A
    dimension balanced later can unbalance an earlier one; a level no row has stays absent."""
    copies = [1] * len(levels)
    for dim, cap in max_copies.items():
        members: dict[int, list[int]] = {}
        for i, row in enumerate(levels):
            if dim in row:
                members.setdefault(row[dim], []).append(i)
        counts = {level: sum(copies[i] for i in rows) for level, rows in members.items()}
        for level, rows in sorted(members.items()):
            count, target = counts[level], max(counts.values())
            while count < target and (open_rows := [i for i in rows if copies[i] < cap]):
                for i in sorted(open_rows, key=lambda i: (copies[i], i))[: target - count]:
                    copies[i] += 1
                    count += 1
    return copies


def _repaired(response: str, record: Mapping[str, Any]) -> list[str]:
    constraints = parse_constraints(record.get("constraints"), source=str(record.get("id")))
    repaired = repair_response(response, constraints) if constraints else None
    return [] if repaired is None else [repaired]


AUGMENTATIONS: dict[str, tuple[Callable[[str, Mapping[str, Any], bool], list[str]], bool]] = {
    "sentence_prefix": (lambda text, record, cut_off: sentence_prefixes(text, cut_off), True),
    "layout": (lambda text, record, cut_off: layout_variants(text), False),
    "repair": (lambda text, record, cut_off: _repaired(text, record), False),
}
"""The augmentations of a prompt's samples, by the ``augmented`` mark their candidates carry:
``(derive(text, record, cut_off) -> texts, applies to a cut-off sample)``."""


@dataclass(frozen=True)
class Candidate:
    """Where a candidate comes from: drawn by the model (``kind`` None) or derived by an augmentation from
    the drawn sample ``source``."""

    kind: str | None = None
    source: int | None = None


def with_augmentations(
    gens: list[CachedGeneration],
    count_tokens: Callable[[str], int],
    kinds: Sequence[str],
    record: Mapping[str, Any],
    max_new_tokens: int,
) -> tuple[list[CachedGeneration], list[Candidate]]:
    """``gens`` followed by the texts each augmentation of ``kinds`` (:data:`AUGMENTATIONS`) derives from each
    drawn sample of ``record`` (new texts only; from a sample cut off at ``max_new_tokens`` only where the
    augmentation allows it), and where each candidate comes from."""
    texts = {g.text.strip() for g in gens}
    extra: list[tuple[CachedGeneration, Candidate]] = []
    for kind in kinds:
        derive, from_cut_off = AUGMENTATIONS[kind]
        for i, g in enumerate(gens):
            cut_off = g.num_tokens >= max_new_tokens
            if cut_off and not from_cut_off:
                continue
            for text in derive(g.text, record, cut_off):
                if text.strip() not in texts:
                    texts.add(text.strip())
                    extra.append((CachedGeneration(text=text, num_tokens=count_tokens(text)), Candidate(kind, i)))
    return gens + [g for g, _ in extra], [Candidate()] * len(gens) + [c for _, c in extra]


def repair_pairs(
    candidates: Sequence[Candidate], scores: Sequence[float], eligible: Sequence[float]
) -> list[PreferencePair]:
    """Each eligible repaired candidate against the sample it was repaired from (the same words with and
    without the requested form; ``margin``: the score gain), where the repair raised the score."""
    return [
        PreferencePair(j, c.source, scores[j] - scores[c.source])
        for j, c in enumerate(candidates)
        if c.kind == "repair" and c.source is not None and not math.isnan(eligible[j]) and scores[j] > scores[c.source]
    ]


def sft_row(row_id: Any, prompt: str, completion: str, score: float | None, augmented: str | None) -> dict[str, Any]:
    """One ``sft.jsonl`` row: the prompt and completion as such and as a chat, the score, the augmentation mark."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    row = {"id": row_id, "prompt": prompt, "completion": completion, "messages": messages, "score": score}
    return row | ({"augmented": augmented} if augmented else {})


REPAIRABLE = tuple(k for k in CONSTRAINTS.names() if CONSTRAINTS.get(k).repair is not None)
"""The constraint kinds a rule can make a response meet (:attr:`~moalign.data.constraints.ConstraintKind.repair`)."""


def reconstrained_targets(
    record: Mapping[str, Any], text: str, key: str, count: int
) -> list[tuple[dict[str, Any], str]]:
    """``count`` other prompts for ``record``'s topic and task (:func:`moalign.data.prompts.reconstrained`, kinds
    of :data:`REPAIRABLE`, drawn from ``key``), each with the target ``text`` becomes for it: ``text`` where it
    meets the new constraints, else its repair (prompts it cannot be repaired for are left out)."""
    out = []
    for t in range(count):
        new = reconstrained(record, f"{key}/{t}", REPAIRABLE)
        if new is None:
            return []
        met = all(r.satisfied for r in check_constraints(text, new["constraints"]))
        target = text if met else repair_response(text, new["constraints"])
        if target is not None:
            out.append((new, target))
    return out


@register_stage("best_of_n", BestOfNConfig, budget=sampling_budget)
def run(ctx: StageContext, config: BestOfNConfig) -> StageResult:
    """Sample ``num_generations`` responses per prompt (resumable, batch by batch), score them, augment them as
    the switches ask, and write the SFT targets, preference pairs, rating labels and a summary."""
    from tqdm.auto import tqdm
    from transformers import set_seed

    from moalign.generation import SamplingConfig, generate
    from moalign.models import load_causal_lm, load_tokenizer

    records = mixed_records(config.dataset, config.split, config.num_prompts, config.dataset_weights)
    if not records:
        raise UserError(f"no prompts in split '{config.split}'", source=str(config.dataset))
    reward = build_reward(ctx, config)
    tokenizer, model = load_tokenizer(ctx.model), load_causal_lm(ctx.model)
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p)
    n = config.num_generations
    spread = config.spread_levels and config.spell_out_tags
    # the model's input for each sample of each prompt (spread: one per sample; otherwise shared by all n)
    inputs = [
        [spell_out_tags(p) for p in spread_requests(r["prompt"], n, config.extra_level_samples)]
        if spread
        else [spell_out_tags(r["prompt"]) if config.spell_out_tags else r["prompt"]]
        for r in records
    ]
    bar = tqdm(total=len(inputs), desc="best-of-n", unit="prompt")

    def generate_batch(indices: list[int]) -> list[list[CachedGeneration]]:
        set_seed(batch_seed(ctx.seed, indices[0] // config.batch_size))
        flat = [text for i in indices for text in inputs[i]]
        drawn = generate(
            model,
            tokenizer,
            flat,
            sampling,
            num_return_sequences=1 if spread else n,
            batch_size=len(flat),
            progress=False,
            bf16=config.bf16,
        )
        bar.update(len(indices))
        gens = [[CachedGeneration(text=g.text, num_tokens=g.num_tokens) for g in row] for row in drawn]
        if not spread:
            return gens
        ends = list(itertools.accumulate(len(inputs[i]) for i in indices))
        return [sum(gens[end - len(inputs[i]) : end], []) for i, end in zip(indices, ends, strict=True)]

    t0 = time.time()
    progress = ctx.dir / SAMPLED_SO_FAR
    generations = sample_batches(generate_batch, len(inputs), config.batch_size, progress)
    bar.close()
    gen_s = time.time() - t0

    origins = [[Candidate()] * len(gens) for gens in generations]
    tagged_kinds = [
        k for k, on in (("sentence_prefix", config.sentence_prefixes), ("layout", config.layout_variants)) if on
    ]

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for i, record in enumerate(records):
        tagged = relabel_prompt(record["prompt"], "") is not None
        kinds = (tagged_kinds if tagged and config.relabel_tags else []) + (
            ["repair"] if config.repair_constraints and record.get("constraints") else []
        )
        if kinds:
            generations[i], origins[i] = with_augmentations(
                generations[i], count_tokens, kinds, record, config.max_new_tokens
            )

    # one row per sample, with its record's columns
    rows = [(i, j, g) for i, gens in enumerate(generations) for j, g in enumerate(gens)]
    prompts = [records[i]["prompt"] for i, _, _ in rows]
    completions = [g.text for _, _, g in rows]
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k != "prompt"]
    columns = {k: [records[i].get(k) for i, _, _ in rows] for k in keys}
    matrix = reward.score(prompts, completions, **columns)
    totals = reward.aggregate(matrix).tolist()
    per_objective = {name: matrix.column(name).tolist() for name in matrix.names}

    samples, ratings, results = [], [], []
    for row, (i, j, g) in enumerate(rows):
        record = records[i]
        checked = check_constraints(g.text, parse_constraints(record.get("constraints"), source=str(record.get("id"))))
        results.append(checked)
        scores = {name: per_objective[name][row] for name in per_objective}
        samples.append(
            {
                "id": record.get("id"),
                "sample": j,
                "prompt": record["prompt"],
                "response": g.text,
                "num_tokens": g.num_tokens,
                "scores": {k: _finite(v) for k, v in scores.items()},
                "total": _finite(totals[row]),
                "constraints": [c.to_dict() for c in checked],
                **({"augmented": origins[i][j].kind} if origins[i][j].kind else {}),
            }
        )
        ratings.append(
            rating_record(
                parse_tags(record["prompt"], reward.tag_dimensions)[0],
                g.text,
                sample_ratings(g.text, scores, reward.objectives, config.rating_classes),
                id=record.get("id"),
            )
        )

    sft, pairs, best_results = [], [], []
    offset = targets = 0
    for i, gens in enumerate(generations):
        texts = [g.text for g in gens]
        group = totals[offset : offset + len(gens)]
        record = records[i]
        eligible = target_scores(group, [g.num_tokens for g in gens], config)
        targets += sum(not math.isnan(e) for e in eligible)
        best = best_index(eligible)
        # each sample's prompt under the tags it measures; None where the prompt has no brevity/structure tag
        relabelled = [relabel_prompt(record["prompt"], t) for t in texts] if config.relabel_tags else []
        relabel = bool(relabelled) and relabelled[0] is not None
        prompts = relabelled if relabel else [record["prompt"]] * len(texts)
        if best is not None:
            best_results.append(results[offset + best])
            chosen = (
                [j for j in range(len(texts)) if not math.isnan(eligible[j])]
                if relabel
                else top_targets(texts, eligible, config.targets_per_prompt)
            )
            numbered = relabel or config.targets_per_prompt > 1  # several targets of one prompt
            for j in chosen:
                prompt = prompts[j]
                row_id = f"{record.get('id')}#{j}" if numbered else record.get("id")
                sft.append(sft_row(row_id, prompt, texts[j], _finite(group[j]), origins[i][j].kind))
        if relabel:
            levels = [parse_tags(p)[1] for p in relabelled]
            k, mirror = config.pairs_per_prompt, config.mirror_pairs
            if config.one_dimension_pairs:
                chosen_pairs = one_dimension_pairs(texts, levels, eligible, k)
            else:
                chosen_pairs = relabelled_pairs(texts, levels, group, eligible, k, mirror)
        else:
            pair = best_worst_pair(texts, group, config.min_margin, eligible)
            chosen_pairs = repair_pairs(origins[i], group, eligible)
            if pair is not None and (pair.chosen, pair.rejected) not in {(p.chosen, p.rejected) for p in chosen_pairs}:
                chosen_pairs.append(pair)
        for pair in chosen_pairs:
            pairs.append(
                {
                    "id": record.get("id"),
                    "prompt": prompts[pair.chosen],
                    "chosen": texts[pair.chosen],
                    "rejected": texts[pair.rejected],
                    "margin": round(pair.margin, 4),
                    "chosen_score": _finite(group[pair.chosen]),
                    "rejected_score": _finite(group[pair.rejected]),
                }
            )
        offset += len(gens)

    for i, record in enumerate(records):
        for j, (g, origin) in enumerate(zip(generations[i], origins[i], strict=True)):
            if origin.kind is not None or g.num_tokens >= config.max_new_tokens:
                continue
            key = f"{ctx.seed}/{record.get('id')}/{j}"
            for t, (new, target) in enumerate(reconstrained_targets(record, g.text, key, config.reconstrained_targets)):
                sft.append(sft_row(f"{record.get('id')}#{j}c{t}", new["prompt"], target, None, "reconstrained"))

    if config.balance_levels is not None:
        copies = balanced_copies([parse_tags(r["prompt"])[1] for r in sft], config.balance_levels)
        sft += [
            r | {"id": f"{r['id']}r{c}", "repeat": c} for r, n in zip(sft, copies, strict=True) for c in range(1, n)
        ]

    out = ctx.dir
    atomic_write_text(out / "samples.jsonl", _jsonl(samples))
    atomic_write_text(out / "sft.jsonl", _jsonl(sft))
    atomic_write_text(out / "pairs.jsonl", _jsonl(pairs))
    atomic_write_text(out / "ratings.jsonl", _jsonl(ratings))
    drawn = [origins[i][j].kind is None for i, j, _ in rows]
    drawn_results = [r for r, keep in zip(results, drawn, strict=True) if keep]
    constraint_rates = {"samples": satisfaction_rates(drawn_results), "best": satisfaction_rates(best_results)}
    atomic_write_json(out / "constraints.json", constraint_rates)
    progress.unlink()

    tokens = sum(g.num_tokens for (_, _, g), keep in zip(rows, drawn, strict=True) if keep)
    summary: dict[str, Any] = {
        "data/prompts": len(records),
        "data/samples": sum(drawn),
        "data/augmented": len(rows) - sum(drawn),
        "data/truncated": sum(
            g.num_tokens >= config.max_new_tokens for (_, _, g), keep in zip(rows, drawn, strict=True) if keep
        ),
        "data/eligible_targets": targets,
        "data/sft": len(sft),
        "data/reconstrained": sum(r.get("augmented") == "reconstrained" for r in sft),
        "data/pairs": len(pairs),
        "data/ratings": len(ratings),
        "reward/total/mean": _mean(totals),
        "reward/best/mean": _mean([s["score"] for s in sft if s["score"] is not None]),
        **{f"reward/{name}/mean": _mean(values) for name, values in per_objective.items()},
        "constraints/satisfied": constraint_rates["samples"]["constraint_level"],
        "constraints/best_satisfied": constraint_rates["best"]["constraint_level"],
        "pairs/margin/mean": _mean([p["margin"] for p in pairs]),
        **level_histogram([r["prompt"] for r in sft]),
        "gen/tokens_per_s": round(tokens / gen_s, 2) if gen_s > 0 else None,
    }
    ctx.log({k: v for k, v in summary.items() if v is not None})
    return StageResult(model=None, summary=summary)
