"""One evaluation: generate with candidate models and a reference, judge every response, compute metrics.

Writes ``metrics.json`` (the settings; per model the judge reward, win rate against the reference and reward
difference with bootstrap intervals, length statistics, BLEU-1/2/4 and perplexity where the set has references,
constraint satisfaction overall and per kind where the prompts carry constraints, controllability when asked
for) and ``samples.jsonl`` (every model's response and scores, per prompt).
The judge is any scorer of the reward layer; by default the run's objectives aggregated.

Notes: docs/papers.md#evalevaluatepy (the files' contents).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from moalign.atomic import atomic_write_json, atomic_write_lines
from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, plugin_spec
from moalign.data.adapters import DatasetSpec, describe
from moalign.data.satisfaction import record_results, satisfaction_rates
from moalign.errors import UserError
from moalign.eval.controllability import ControllabilityConfig, controllability
from moalign.eval.generations import GenerationCache, GenerationRun, cached_generate
from moalign.eval.metrics import bleu_scores, bootstrap_interval, corpus_perplexity, length_stats, mean, win_rate
from moalign.eval.presets import DecodingPreset, decoding_preset
from moalign.generation import BATCH_SIZE
from moalign.precision import resolve_bf16
from moalign.rewards.scorers.repetition import repeated_ngram_share

if TYPE_CHECKING:
    from moalign.data.specs import DataContext
    from moalign.rewards import MultiObjectiveReward
    from moalign.rewards.objectives import RewardSettings

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.jsonl"
CONTROL_SAMPLES_FILE = "controllability.jsonl"
"""Every controllability response of every swept model, with its tags and measured levels."""
EVAL_KIND = "moalign-eval"
"""``metrics.json["kind"]``: how reports recognise an evaluation's metrics file."""
REFERENCE_COLUMNS = ("reference", "completion", "chosen", "response", "output")
"""Columns read, in order, as a record's reference response (BLEU, perplexity) when none is named."""


class EvalSettings(StrictModel):
    """What to evaluate on and how: prompts, decoding, judge, controllability."""

    dataset: DatasetSpec = "builtin:ifeval-lite"
    split: str = "test"
    num_samples: int = Field(64, ge=1)
    """Prompts evaluated (the split's first ones, always the same)."""
    decoding: DecodingPreset = "greedy"
    """``greedy``; ``sampled`` (T 0.6, top-p 0.95); ``beam`` (width 4, length penalty 0.9), seed 004 section 4.5."""
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(BATCH_SIZE, ge=1)
    judge: PluginSpec | None = None
    """A scorer, as an objective's ``scorer``: a name or ``{name: {config}}``. Default: the run's objectives."""
    reference_column: str | None = None
    """Column holding reference responses (BLEU, perplexity); default: the first of ``REFERENCE_COLUMNS``."""
    perplexity: bool = True
    """Compute each model's perplexity on reference responses: the evaluation set's (where it has them),
    or ``perplexity_dataset``'s."""
    perplexity_dataset: DatasetSpec | None = None
    """Where perplexity is measured instead of the evaluation set, e.g. seed 004's held-out validation set
    (sec. 3.5: "perplexity on a held-out validation set"); its first ``num_samples`` records with a
    reference response (``reference_column``) are used. ``metrics.json`` names the set in ``perplexity_source``."""
    perplexity_split: str = "validation"
    controllability: ControllabilityConfig | None = None
    bf16: bool | None = None
    """Decode in bf16 autocast; None: where the device runs it natively. The recipe's run-level
    ``precision`` sets it like every stage's (:mod:`moalign.precision`)."""
    bootstrap_resamples: int = Field(1000, ge=10)
    seed: int = 0

    @field_validator("judge", mode="before")
    @classmethod
    def _validate_judge(cls, raw: Any) -> PluginSpec | None:
        from moalign.rewards import SCORERS

        return None if raw is None else plugin_spec(SCORERS, raw)


def judge_reward(
    judge: PluginSpec | str | Mapping[str, Any] | None, recipe: RewardSettings | None = None
) -> MultiObjectiveReward:
    """The judge as a reward: one objective named after the scorer, or (``judge=None``) the recipe's
    objectives aggregated, or the task suite's default objectives when there is no recipe."""
    from moalign.rewards import SCORERS, MultiObjectiveReward
    from moalign.rewards.objectives import DEFAULT_OBJECTIVES

    if judge is None and recipe is not None and recipe.objectives:
        reward = MultiObjectiveReward.from_recipe(recipe)
    elif judge is None:
        tags = recipe.tag_dimensions if recipe is not None else None
        reward = MultiObjectiveReward(DEFAULT_OBJECTIVES, "weighted_sum", tag_dimensions=tags)
    else:
        try:
            spec = plugin_spec(SCORERS, judge)
        except ValueError as exc:
            raise UserError(f"judge: {exc}") from None
        tags = recipe.tag_dimensions if recipe is not None else None
        reward = MultiObjectiveReward([{"name": spec.type, "scorer": spec}], "weighted_sum", tag_dimensions=tags)
    reward.train = False
    return reward


def load_eval_records(
    dataset: DatasetSpec, split: str, num: int, ctx: DataContext | None = None
) -> list[dict[str, Any]]:
    """The first ``num`` records of the split (any dataset spec of :mod:`moalign.data.specs`)."""
    from moalign.data.specs import load_dataset_spec, require_prompt
    from moalign.registry import did_you_mean

    data = load_dataset_spec(dataset, split=split, ctx=ctx)
    if "prompt" not in data.column_names:
        hint = did_you_mean("prompt", data.column_names)
        raise UserError(f"no 'prompt' column{hint}; columns: {', '.join(data.column_names)}", source=str(dataset))
    records = data.select(range(min(num, len(data)))).to_list()
    if not records:
        raise UserError(f"no prompts in split '{split}'", source=str(dataset))
    for i, record in enumerate(records):
        require_prompt(record["prompt"], i, dataset)
    return records


def reference_texts(records: Sequence[Mapping[str, Any]], column: str | None = None) -> list[str | None]:
    """Each record's reference response (a string, or the last message of a chat), None where it has none."""
    from moalign.data.specs import message_text

    names = [column] if column else [c for c in REFERENCE_COLUMNS if any(r.get(c) for r in records)][:1]
    out: list[str | None] = []
    for r in records:
        value = r.get(names[0]) if names else None
        try:
            out.append(message_text(value, "assistant") if value else None)
        except TypeError:
            out.append(None)
    return out


def perplexity_set(
    settings: EvalSettings, prompts: Sequence[str], refs: Sequence[str | None]
) -> tuple[list[str], list[str], dict[str, Any] | None]:
    """``(prompts, reference responses, description)`` perplexity is measured on: the evaluation set's
    records with a reference, or those of ``settings.perplexity_dataset``; empty (and None) without any."""
    if not settings.perplexity:
        return [], [], None
    dataset, split = settings.dataset, settings.split
    if settings.perplexity_dataset is not None:
        dataset, split = settings.perplexity_dataset, settings.perplexity_split
        records = load_eval_records(dataset, split, settings.num_samples)
        prompts, refs = [str(r["prompt"]) for r in records], reference_texts(records, settings.reference_column)
    pairs = [(p, str(r)) for p, r in zip(prompts, refs, strict=True) if r]
    if not pairs:
        return [], [], None
    source = {"dataset": describe(dataset), "split": split, "responses": len(pairs)}
    return [p for p, _ in pairs], [r for _, r in pairs], source


def reference_perplexity(spec: str, prompts: Sequence[str], references: Sequence[str], batch_size: int = 8) -> float:
    """Perplexity of model ``spec`` on the reference responses (each given its prompt in the chat
    template, end-of-sequence token included): ``exp`` of the token-weighted mean NLL."""
    from moalign.rewards.scorers.perplexity import ReferenceLM

    lm = ReferenceLM(spec, None)
    prompt_ids = [lm.prompt_ids(p, "chat") for p in prompts]
    completion_ids = [lm.completion_ids(r) for r in references]
    nlls = lm.mean_nll(prompt_ids, completion_ids, batch_size)
    return corpus_perplexity(nlls, [len(c) for c in completion_ids])


def unique_labels(specs: Sequence[str]) -> list[str]:
    """Short display names for model specs: the last path part, suffixed ``-2``, ``-3`` when repeated."""
    out: list[str] = []
    for spec in specs:
        base = spec.rstrip("/").split("/")[-1].removeprefix("builtin:") or spec
        label, k = base, 2
        while label in out:
            label, k = f"{base}-{k}", k + 1
        out.append(label)
    return out


def labelled_models(items: Sequence[str]) -> dict[str, str]:
    """``{label: spec}`` from ``SPEC`` or ``LABEL=SPEC`` items; unlabelled specs get :func:`unique_labels` names."""
    pairs = [item.split("=", 1) if "=" in item else [None, item] for item in items]
    auto = iter(unique_labels([spec for label, spec in pairs if label is None]))
    out: dict[str, str] = {}
    for label, spec in pairs:
        name = label or next(auto)
        if name in out or name == "reference":
            raise UserError(f"model label '{name}' is used twice (or is 'reference'); label models as NAME=SPEC")
        out[name] = spec
    return out


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, digits)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {k: _round(v) for k, v in length_stats(values).items()}


def evaluate(
    candidates: Mapping[str, str],
    reference: str,
    settings: EvalSettings,
    output_dir: str | Path,
    *,
    records: Sequence[Mapping[str, Any]] | None = None,
    judge: MultiObjectiveReward | None = None,
    tag_dimensions: Mapping[str, Any] | None = None,
    cache: GenerationCache | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``candidates`` (``{label: model spec}``) against the ``reference`` model spec; write into
    ``output_dir`` ``metrics.json`` (the settings; per model the judge reward, win rate against the reference,
    lengths and text metrics) and ``samples.jsonl`` (every response and its scores); returns the metrics."""
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if records is None:
        records = load_eval_records(settings.dataset, settings.split, settings.num_samples)
    judge = judge if judge is not None else judge_reward(settings.judge)
    sampling = decoding_preset(settings.decoding, settings.max_new_tokens)
    prompts = [str(r["prompt"]) for r in records]
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k != "prompt"]
    columns = {k: [r.get(k) for r in records] for k in keys}

    constrained = any(r.get("constraints") for r in records)
    ref_label = "reference"
    labels = {ref_label: reference, **{k: v for k, v in candidates.items() if k != ref_label}}
    if len(labels) != len(candidates) + 1:
        raise UserError("a candidate model cannot be labelled 'reference'")
    runs: dict[str, GenerationRun] = {}
    by_spec: dict[str, GenerationRun] = {}
    for label, spec in labels.items():
        if spec not in by_spec:
            by_spec[spec] = cached_generate(
                spec,
                prompts,
                sampling,
                cache=cache,
                seed=settings.seed,
                batch_size=settings.batch_size,
                progress=progress,
                desc=f"generating ({label})",
                bf16=settings.bf16,
            )
        runs[label] = by_spec[spec]

    refs = reference_texts(records, settings.reference_column)
    with_ref = [i for i, r in enumerate(refs) if r]
    ppl_prompts, ppl_refs, ppl_source = perplexity_set(settings, prompts, refs)
    perplexity_by_spec: dict[str, float] = {}
    scores: dict[str, dict[str, list[float]]] = {}
    models: dict[str, Any] = {}
    matrices = {label: judge.score(prompts, [g.text for g in run.responses], **columns) for label, run in runs.items()}
    judge.freeze(list(matrices.values()))  # MOSLIM statistics: the training stage's, or pooled over every model
    for label, run in runs.items():
        texts = [g.text for g in run.responses]
        matrix = matrices[label]
        total = judge.aggregate(matrix).tolist()
        scores[label] = {"total": total, **{n: matrix.column(n).tolist() for n in matrix.names}}
        entry: dict[str, Any] = {
            "spec": labels[label],
            "role": "reference" if label == ref_label else "candidate",
            "fingerprint": run.fingerprint,
            "reward": {"mean": _round(mean(total)), "n": sum(1 for v in total if not math.isnan(v))},
            "objectives": {n: _round(mean(scores[label][n])) for n in matrix.names},
            "length": {
                "tokens": _stats([g.num_tokens for g in run.responses]),
                "words": _stats([len(t.split()) for t in texts]),
            },
            "repetition": _round(mean([repeated_ngram_share(t.lower().split(), 3) for t in texts])),
            "truncated": sum(g.num_tokens >= sampling.max_new_tokens for g in run.responses),
            "bleu": None,
            "perplexity": None,
            "constraints": satisfaction_rates(record_results(records, texts)) if constrained else None,
            "generation": {
                "cached": run.cached,
                "generated_tokens": run.generated_tokens,
                "tokens_per_s": _round(run.tokens_per_s, 2),
            },
        }
        if with_ref:
            bleu = bleu_scores([texts[i] for i in with_ref], [str(refs[i]) for i in with_ref])
            entry["bleu"] = {k: _round(v) for k, v in bleu.items()}
        if ppl_refs:
            spec = labels[label]
            if spec not in perplexity_by_spec:
                perplexity_by_spec[spec] = reference_perplexity(spec, ppl_prompts, ppl_refs, settings.batch_size)
            entry["perplexity"] = _round(perplexity_by_spec[spec])
        models[label] = entry

    ref_total = scores[ref_label]["total"]
    for label, entry in models.items():
        if label == ref_label:
            entry["win_rate"], entry["reward_diff"], entry["reward_diff_interval"] = None, None, None
            continue
        total = scores[label]["total"]
        wr = win_rate(total, ref_total, num_resamples=settings.bootstrap_resamples, seed=settings.seed)
        entry["win_rate"] = {**wr.to_dict(), "rate": _round(wr.rate)}
        if wr.interval is not None:
            entry["win_rate"]["interval"] = [_round(x) for x in wr.interval]
        diffs = [c - r for c, r in zip(total, ref_total, strict=True) if not (math.isnan(c) or math.isnan(r))]
        entry["reward_diff"] = _round(mean(diffs))
        resamples = settings.bootstrap_resamples
        interval = bootstrap_interval(diffs, num_resamples=resamples, seed=settings.seed) if diffs else None
        entry["reward_diff_interval"] = [_round(x) for x in interval] if interval else None

    metrics: dict[str, Any] = {
        "kind": EVAL_KIND,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "dataset": describe(settings.dataset),
        "split": settings.split,
        "num_prompts": len(records),
        "num_with_reference_response": len(with_ref),
        "perplexity_source": ppl_source,
        "decoding": {"preset": settings.decoding, **sampling.__dict__, "bf16": resolve_bf16(settings.bf16)},
        "judge": judge_description(settings.judge, judge),
        "objectives": list(judge.names),
        "reference": ref_label,
        "settings": settings.model_dump(mode="json"),
        "models": models,
        "controllability": None,
    }
    if settings.controllability is not None:
        swept = settings.controllability.models or list(labels)
        unknown = [label for label in swept if label not in labels]
        if unknown:
            raise UserError(
                f"controllability.models names {unknown}, which are not evaluated here; models: {sorted(labels)}"
            )
        ctrl = settings.controllability
        control_prompts = prompts
        if ctrl.dataset is not None:
            # four records per base prompt leave room for prompts that differ only in their tags
            control_records = load_eval_records(ctrl.dataset, ctrl.split, 4 * ctrl.num_prompts)
            control_prompts = [str(r["prompt"]) for r in control_records]
        control_by_spec: dict[str, dict[str, Any]] = {}
        for spec in dict.fromkeys(labels[label] for label in swept):
            control_by_spec[spec] = controllability(
                spec,
                control_prompts,
                settings.controllability,
                sampling,
                cache=cache,
                tag_dimensions=tag_dimensions if tag_dimensions is not None else judge.tag_dimensions,
                seed=settings.seed,
                batch_size=settings.batch_size,
                progress=progress,
                bf16=settings.bf16,
            )
        control_samples = {spec: result.pop("samples") for spec, result in control_by_spec.items()}
        metrics["controllability"] = {label: control_by_spec[labels[label]] for label in swept}
        atomic_write_lines(
            out_dir / CONTROL_SAMPLES_FILE,
            (
                json.dumps({"model": label, **s}, ensure_ascii=False) + "\n"
                for label in swept
                for s in control_samples[labels[label]]
            ),
        )

    samples = (
        {
            "id": r.get("id", i),
            "prompt": prompts[i],
            "reference_response": refs[i],
            "responses": {label: run.responses[i].text for label, run in runs.items()},
            "num_tokens": {label: run.responses[i].num_tokens for label, run in runs.items()},
            "scores": {label: {k: _round(v[i]) for k, v in s.items()} for label, s in scores.items()},
        }
        for i, r in enumerate(records)
    )
    atomic_write_lines(out_dir / SAMPLES_FILE, (json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_json(out_dir / METRICS_FILE, metrics)
    if settings.controllability is None:  # the sweeps an earlier evaluation left here are not this one's
        (out_dir / CONTROL_SAMPLES_FILE).unlink(missing_ok=True)
    return metrics


def judge_description(spec: PluginSpec | None, judge: MultiObjectiveReward) -> dict[str, Any]:
    """How the judge was configured, for ``metrics.json``."""
    if spec is not None:
        return {"scorer": spec.model_dump(mode="json")}
    description = {
        "objectives": [o.model_dump(mode="json") for o in judge.objectives],
        "aggregator": judge.aggregator.model_dump(mode="json"),
    }
    if judge.moslim is not None:
        description["moslim_statistics"] = judge.statistics_source
    return description


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers as flat ``eval/<label>/<metric>`` keys (for ``metrics.jsonl`` and stage summaries)."""
    out: dict[str, float] = {}
    for label, m in metrics["models"].items():
        values = {
            "reward/mean": m["reward"]["mean"],
            "reward_diff": m.get("reward_diff"),
            "win_rate": (m.get("win_rate") or {}).get("rate"),
            **{k: (m.get("bleu") or {}).get(k) for k in ("bleu1", "bleu2", "bleu4")},
            "perplexity": m.get("perplexity"),
            "length/tokens/mean": m["length"]["tokens"]["mean"],
            "repetition": m.get("repetition"),
            **{f"constraints/{k}": (m.get("constraints") or {}).get(k) for k in ("prompt_level", "constraint_level")},
            **{f"reward/{k}/mean": v for k, v in m["objectives"].items()},
        }
        out.update({f"eval/{label}/{k}": v for k, v in values.items() if v is not None})
    for label, c in (metrics.get("controllability") or {}).items():
        for d, s in c["sweeps"].items():
            if s["spearman"] is not None:
                out[f"eval/{label}/spearman/{d}"] = round(s["spearman"], 4)
    return out
