"""The multi-objective reward: objectives -> scorers -> ``[B, k]`` score matrix -> aggregator -> ``[B]``.

:class:`MultiObjectiveReward` is built from a recipe's objectives, aggregator and tag dimensions. For
a batch it strips preference tags from the prompts (scorers never see them), runs every objective's
scorer, checks the scores, logs each objective's mean and std (``reward/<objective>/mean``, ``/std``)
and aggregates. It is also a TRL-style reward function: ``reward(prompts=..., completions=...,
**columns) -> list[float]``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import Field, ValidationError, field_validator

from moalign.atomic import atomic_write_json
from moalign.config.base import StrictModel
from moalign.config.plugins import PluginSpec, format_loc, plugin_spec
from moalign.config.yaml_source import Loc
from moalign.data.specs import StageOutputs, message_text, resolve_stage_refs
from moalign.errors import UserError
from moalign.processes import is_main_process
from moalign.registry import did_you_mean
from moalign.rewards.aggregators import AGGREGATORS, aggregate, group_zscore
from moalign.rewards.moslim import MoslimMapper
from moalign.rewards.scorers import SCORERS, ModelCache, ScorerDef
from moalign.tags import (
    DEFAULT_TAG_DIMENSIONS,
    IntensityRange,
    TagDimensions,
    TagError,
    check_dimensions,
    parse_tags,
    tags_from_columns,
)
from moalign.training.context import MetricsLogger

REWARD_STATE_FILE = "reward_state.json"
"""Written into a training stage's directory: the MOSLIM statistics its reward gathered (seed 002 eq. 11)."""

class ObjectiveConfig(StrictModel):
    """One objective: a named score with its scorer and its place in the aggregate.

    ```yaml
    - name: fluency
      scorer: {classifier: {model: ./disfluency-bert, label: disfluent, complement: true}}
      weight: 1.0
      ideal: 1.0            # for gap_to_ideal / chebyshev / soft_chebyshev
      normalize: group      # z-score within each prompt's group before aggregating
      tag_dimension: null   # if set, the objective applies only to prompts tagged with it
    ```
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    scorer: PluginSpec
    """A registered scorer name, or a one-key mapping ``{scorer_name: {its config}}``."""
    weight: float = 1.0
    ideal: float | None = None
    """The score this objective aims at (distance-based aggregators)."""
    normalize: Literal["batch", "group"] | None = None
    """z-score this objective over the batch, or within each prompt group, before aggregating."""
    tag_dimension: str | None = None
    """A declared tag dimension: the objective applies only to prompts whose tags name it."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _validate_scorer(cls, raw: Any) -> PluginSpec:
        return plugin_spec(SCORERS, raw)


def objective_problems(
    objectives: list[ObjectiveConfig], aggregator_spec: PluginSpec, dims: dict[str, IntensityRange]
) -> list[tuple[Loc, str]]:
    """Checks across keys: unique names, declared tag dimensions, what the aggregator needs."""
    problems: list[tuple[Loc, str]] = []
    aggregator = AGGREGATORS.get(aggregator_spec.type)
    seen: dict[str, int] = {}
    tagged: dict[str, int] = {}
    for i, obj in enumerate(objectives):
        loc: Loc = ("objectives", i)
        if obj.name in seen:
            problems.append(
                ((*loc, "name"), f"objective name '{obj.name}' is already used by objectives[{seen[obj.name]}]")
            )
        seen.setdefault(obj.name, i)
        if obj.tag_dimension is not None and obj.tag_dimension not in dims:
            known = ", ".join(dims) or "none"
            problems.append(
                (
                    (*loc, "tag_dimension"),
                    f"tag dimension '{obj.tag_dimension}' is not declared in tag_dimensions"
                    f"{did_you_mean(obj.tag_dimension, list(dims))}; declared: {known}",
                )
            )
        if aggregator.needs_ideals and obj.ideal is None:
            problems.append(
                ((*loc, "ideal"), f"aggregator '{aggregator.name}' needs an ideal value for every objective")
            )
        if aggregator.needs_tags and obj.tag_dimension is not None:
            if obj.tag_dimension in tagged:
                first = tagged[obj.tag_dimension]
                problems.append(
                    (
                        (*loc, "tag_dimension"),
                        f"tag dimension '{obj.tag_dimension}' is already scored by objectives[{first}]",
                    )
                )
            else:
                tagged[obj.tag_dimension] = i
            if obj.weight != 1.0:
                problems.append(((*loc, "weight"), f"aggregator '{aggregator.name}' (seed 002, eq. 11) has no weights"))
    if aggregator.needs_tags and objectives and not tagged:
        problems.append(
            (("objectives",), f"aggregator '{aggregator.name}' needs at least one objective with a tag_dimension")
        )
    return problems


DEFAULT_OBJECTIVES: tuple[dict[str, Any], ...] = (
    {"name": "constraints", "scorer": "verifier"},
    {"name": "brevity", "scorer": "brevity"},
    {"name": "structure", "scorer": "structure"},
)
"""The task suite's objectives, used when the recipe declares none (weight 1 each, summed)."""


class RewardSettings(Protocol):
    """What a reward reads of a recipe: its objectives, aggregator and tag dimensions
    (:class:`moalign.recipe.Recipe` is one)."""

    @property
    def objectives(self) -> Sequence[ObjectiveConfig]: ...

    @property
    def aggregator(self) -> PluginSpec: ...

    @property
    def tag_dimensions(self) -> TagDimensions: ...


class RewardStage(StageOutputs, Protocol):
    """What :meth:`MultiObjectiveReward.for_stage` reads of a stage: its recipe, and where ``stage:``
    references resolve (:class:`moalign.stages.base.StageContext` is one)."""

    @property
    def recipe(self) -> RewardSettings: ...


class ScoreError(UserError):
    """A scorer returned something that is not a score (NaN where it should score, inf, wrong count)."""


def _excerpt(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


@dataclass
class ScoreMatrix:
    """Scores of one batch on every objective: ``values[b, i]`` of sample b on objective i."""

    names: list[str]
    values: torch.Tensor
    """``[B, k]`` float64; NaN where the objective does not apply to the sample."""
    tags: list[dict[str, int]]
    """Each sample's preference tags ``{dimension: intensity}``."""
    groups: list[str]
    """Each sample's prompt as given: samples with the same prompt form a group (GRPO/RLOO)."""

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def applicable(self) -> torch.Tensor:
        """``[B, k]`` bool: the objective applies to the sample."""
        return ~torch.isnan(self.values)

    def column(self, name: str) -> torch.Tensor:
        return self.values[:, self.names.index(name)]

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        """``{prefix}/<objective>/mean`` and ``/std`` (population std) over applicable samples only."""
        out: dict[str, float] = {}
        for i, name in enumerate(self.names):
            col = self.values[:, i]
            col = col[~torch.isnan(col)]
            if col.numel():
                out[f"{prefix}/{name}/mean"] = col.mean().item()
                out[f"{prefix}/{name}/std"] = col.std(correction=0).item()
        return out


class MultiObjectiveReward:
    """Scores batches on k objectives and aggregates them into one reward per sample.

    ``objectives`` are :class:`ObjectiveConfig` (or mappings of their keys);
    every scorer sees the whole batch (one forward per batch, shared where models are shared) and
    the entries of an objective tied to a tag dimension are then kept only for prompts tagged with it;
    ``aggregator`` is a registered aggregator name or ``{name: {params}}``. Objectives whose scorers
    load the same model share one copy (``models``). For ``moslim`` the reward keeps moving
    statistics: ``train = False`` freezes them (evaluation), and ``state_dict()`` /
    ``load_state_dict()`` carry them across a resume.
    """

    def __init__(
        self,
        objectives: Sequence[ObjectiveConfig | Mapping[str, Any]],
        aggregator: str | Mapping[str, Any] | PluginSpec = "weighted_sum",
        *,
        tag_dimensions: TagDimensions | None = None,
        log: MetricsLogger | None = None,
        models: ModelCache | None = None,
    ) -> None:
        self.objectives: list[ObjectiveConfig] = []
        for i, o in enumerate(objectives):
            try:
                self.objectives.append(o if isinstance(o, ObjectiveConfig) else ObjectiveConfig.model_validate(o))
            except ValidationError as exc:
                lines = [f"{format_loc(('objectives', i, *e['loc']))}: {e['msg']}" for e in exc.errors()]
                raise UserError("invalid objective: " + "; ".join(lines)) from None
        if not self.objectives:
            raise UserError("a multi-objective reward needs at least one objective")
        try:
            self.aggregator = plugin_spec(AGGREGATORS, aggregator)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        self.tag_dimensions = check_dimensions(DEFAULT_TAG_DIMENSIONS if tag_dimensions is None else tag_dimensions)
        problems = objective_problems(self.objectives, self.aggregator, self.tag_dimensions)
        if problems:
            raise UserError("invalid objectives: " + "; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in problems))
        self.names = [o.name for o in self.objectives]
        self.log = log
        self.models = models if models is not None else ModelCache()
        self.train = True
        self._defs: list[ScorerDef] = [SCORERS.get(o.scorer.type) for o in self.objectives]
        self.scorers = []
        for obj, d in zip(self.objectives, self._defs, strict=True):
            try:
                self.scorers.append(d.create(obj.scorer.config, self.models))
            except UserError as exc:
                raise UserError(f"objective '{obj.name}' (scorer '{d.name}'): {exc}") from exc
        self.moslim: MoslimMapper | None = None
        self.statistics_source: str | None = None
        """Where the MOSLIM statistics come from once frozen: a training stage's directory name, or pooled."""
        if self.aggregator.type == "moslim":
            cfg = self.aggregator.config
            dims = [str(o.tag_dimension) for o in self.objectives if o.tag_dimension is not None]
            self.moslim = MoslimMapper(dims, k=cfg.k, momentum=cfg.momentum, eps=cfg.eps)  # type: ignore[attr-defined]
        self.__name__ = "moalign_reward"  # TRL names reward functions by __name__ in its logs

    @classmethod
    def from_recipe(
        cls, recipe: RewardSettings, *, log: MetricsLogger | None = None, models: ModelCache | None = None
    ) -> MultiObjectiveReward:
        return cls(recipe.objectives, recipe.aggregator, tag_dimensions=recipe.tag_dimensions, log=log, models=models)

    @classmethod
    def for_stage(
        cls,
        ctx: RewardStage,
        objectives: Sequence[Any] | None = None,
        aggregator: Any = None,
        *,
        log: MetricsLogger | None = None,
    ) -> MultiObjectiveReward:
        """The reward a stage of a run uses: the recipe's objectives and aggregator (or the stage's own),
        with ``stage:TYPE/FILE`` references in scorer configs (e.g. a reward model trained earlier in
        the run) resolved to that stage's output."""
        raw = ctx.recipe.objectives if objectives is None else objectives
        entries = [resolve_stage_refs(o.model_dump(mode="json") if hasattr(o, "model_dump") else o, ctx) for o in raw]
        aggregator = ctx.recipe.aggregator if aggregator is None else aggregator
        return cls(entries, aggregator, tag_dimensions=ctx.recipe.tag_dimensions, log=log)

    # -- scoring ---------------------------------------------------------------------------------

    def _tags(self, prompts: list[str], columns: Mapping[str, Sequence[Any]]) -> tuple[list[str], list[dict[str, int]]]:
        stripped, tags = [], []
        for i, prompt in enumerate(prompts):
            try:
                text, found = parse_tags(prompt, self.tag_dimensions)
            except TagError as exc:
                raise TagError(f"sample {i}: {exc}") from None
            stripped.append(text)
            tags.append(found)
        for i, given in enumerate(tags_from_columns(columns, self.tag_dimensions, len(prompts))):
            for dim, value in given.items():
                if tags[i].setdefault(dim, value) != value:
                    raise TagError(f"sample {i}: prompt tag <{dim} {tags[i][dim]}> disagrees with column value {value}")
        return stripped, tags

    def _checked(
        self, j: int, raw: Any, applies: torch.Tensor, prompts: Sequence[str], completions: Sequence[str]
    ) -> torch.Tensor:
        obj, d = self.objectives[j], self._defs[j]
        where = f"objective '{obj.name}' (scorer '{d.name}')"
        values = list(raw)
        if len(values) != len(prompts):
            raise ScoreError(f"{where} returned {len(values)} scores for {len(prompts)} samples")
        out = torch.full((len(values),), math.nan, dtype=torch.float64)
        for i, v in enumerate(values):
            if not applies[i]:
                continue
            try:
                f = math.nan if v is None else float(v)
            except (TypeError, ValueError):
                raise ScoreError(f"{where} returned {v!r} for sample {i}, not a number") from None
            if math.isinf(f) or (math.isnan(f) and not d.partial):
                raise ScoreError(
                    f"{where} returned {f} for sample {i} (prompt {_excerpt(prompts[i])}, "
                    f"completion {_excerpt(completions[i])}); a score must be finite"
                    + ("" if d.partial else ", and this scorer must score every sample")
                )
            out[i] = f
        return out

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Sequence[Any]) -> ScoreMatrix:
        """The ``[B, k]`` score matrix of a batch (prompts may carry tags; chats are reduced to text)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        prompt_texts = [message_text(p, "user") for p in prompts]
        completion_texts = [message_text(c, None) for c in completions]
        stripped, tags = self._tags(prompt_texts, columns)
        scorer_columns = {**columns, "tags": tags}
        values = torch.full((len(prompts), len(self.objectives)), math.nan, dtype=torch.float64)
        for j, (obj, scorer) in enumerate(zip(self.objectives, self.scorers, strict=True)):
            applies = torch.tensor(
                [obj.tag_dimension is None or obj.tag_dimension in t for t in tags], dtype=torch.bool
            )
            try:
                raw = scorer(stripped, completion_texts, **scorer_columns) if len(prompts) else []
            except UserError as exc:
                raise type(exc)(f"objective '{obj.name}': {exc}") from exc
            values[:, j] = self._checked(j, raw, applies, stripped, completion_texts)
        return ScoreMatrix(names=list(self.names), values=values, tags=tags, groups=prompt_texts)

    # -- aggregation -----------------------------------------------------------------------------

    def _normalised(self, matrix: ScoreMatrix) -> torch.Tensor:
        """The score matrix with each objective's ``normalize`` applied."""
        values = matrix.values.clone()
        for j, obj in enumerate(self.objectives):
            if obj.normalize is not None:
                groups = matrix.groups if obj.normalize == "group" else None
                values[:, j] = group_zscore(values[:, j : j + 1], groups)[:, 0]
        return values

    def aggregate(self, matrix: ScoreMatrix) -> torch.Tensor:
        """One reward per sample ``[B]`` (NaN where no objective applies)."""
        values = self._normalised(matrix)
        if self.moslim is not None:
            return self._moslim_reward(matrix, values)
        needs_ideals = AGGREGATORS.get(self.aggregator.type).needs_ideals
        return aggregate(
            self.aggregator.type,
            values,
            weights=[o.weight for o in self.objectives],
            ideals=[float(o.ideal) for o in self.objectives] if needs_ideals else None,  # type: ignore[arg-type]
            groups=matrix.groups,
            config=self.aggregator.config,
        )

    def _moslim_reward(self, matrix: ScoreMatrix, values: torch.Tensor) -> torch.Tensor:
        """Seed 002 eq. 11 over the tagged objectives, plus a weighted sum of the untagged ones.

        Seed 002 maps only tag-controlled dimensions. An objective without a tag dimension (e.g. the
        constraint satisfaction every prompt asks for) is added as ``sum_j w_j s_j`` so one policy can
        be steered by tags and still held to an always-on objective; a part with nothing applicable
        is left out, and the reward is NaN only where neither part applies.
        """
        assert self.moslim is not None
        others = [j for j, o in enumerate(self.objectives) if o.tag_dimension is None]
        mapped = self.moslim(*self._moslim_inputs(matrix, values), update=self.train)
        if not others:
            return mapped
        extra = aggregate("weighted_sum", values[:, others], weights=[self.objectives[j].weight for j in others])
        both = torch.stack([mapped.to(extra.dtype), extra], dim=1)
        return torch.where(torch.isnan(both).all(dim=1), torch.nan, torch.nansum(both, dim=1))

    def _moslim_inputs(self, matrix: ScoreMatrix, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p_target [B, d], intensities [B, d])`` of the tagged objectives, for :class:`MoslimMapper`."""
        assert self.moslim is not None
        tagged = [j for j, o in enumerate(self.objectives) if o.tag_dimension is not None]
        dims = self.moslim.dimensions
        intensities = torch.tensor([[t.get(d, 0) for d in dims] for t in matrix.tags], dtype=torch.long)
        return values[:, tagged], intensities.view(len(matrix), len(dims))

    def freeze(self, matrices: Sequence[ScoreMatrix]) -> None:
        """Stop updating the MOSLIM statistics (evaluation), after completing them from ``matrices``.

        Seed 002 eq. 11 normalises with statistics gathered during training; an evaluation reads those
        (:meth:`load_trained_statistics`). Where there are none, or for a (dimension, intensity) the
        training never saw, they are gathered once over ``matrices`` together (every evaluated model's
        responses, cumulatively whatever the training ``momentum``), so no model's rewards depend on
        which models were scored before it.
        """
        if self.moslim is not None:
            m = self.moslim
            pooled = MoslimMapper(m.dimensions, k=m.k, momentum=None, eps=m.eps)
            for matrix in matrices:
                pooled.update(*self._moslim_inputs(matrix, self._normalised(matrix)))
            missing = sorted(set(pooled.stats) - set(m.stats))
            m.stats.update({key: pooled.stats[key] for key in missing})
            if missing:
                pooled_part = f"pooled over the {len(matrices)} evaluated models' responses"
                keys = ", ".join(f"{d}:{n}" for d, n in missing)
                self.statistics_source = (
                    f"{self.statistics_source}; {keys} {pooled_part}" if self.statistics_source else pooled_part
                )
        self.train = False

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], *, frozen: bool = False, **columns: Sequence[Any]
    ) -> list[float]:
        """Score, log and aggregate a batch: one reward per sample (NaN where nothing applies).

        ``frozen`` (held-out prompts during training): the MOSLIM statistics are read and left as they
        are; an intensity they have not seen yet takes the batch's own statistics, for this batch only.
        """
        matrix = self.score(prompts, completions, **columns)
        reward = self._frozen_aggregate(matrix) if frozen and self.moslim is not None else self.aggregate(matrix)
        if self.log is not None:
            metrics = matrix.metrics()
            defined = reward[~torch.isnan(reward)]
            if defined.numel():
                metrics["reward/mean"] = defined.mean().item()
                metrics["reward/std"] = defined.std(correction=0).item()
            self.log(metrics)
        return reward.tolist()

    def _frozen_aggregate(self, matrix: ScoreMatrix) -> torch.Tensor:
        assert self.moslim is not None
        saved, train, source = copy.deepcopy(self.moslim.stats), self.train, self.statistics_source
        try:
            self.freeze([matrix])
            return self.aggregate(matrix)
        finally:
            self.moslim.stats, self.train, self.statistics_source = saved, train, source

    # -- state (the MOSLIM statistics) ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"moslim": self.moslim.state_dict()} if self.moslim is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.moslim is not None:
            if "moslim" not in state:
                raise ValueError("saved reward state has no MOSLIM statistics")
            self.moslim.load_state_dict(state["moslim"])

    def signature(self) -> dict[str, Any]:
        """What defines this reward (objectives, aggregator, tag dimensions): two rewards with equal
        signatures score alike, so one can use the other's statistics."""
        return {
            "objectives": [o.model_dump(mode="json") for o in self.objectives],
            "aggregator": self.aggregator.model_dump(mode="json"),
            "tag_dimensions": {d: list(r) for d, r in sorted(self.tag_dimensions.items())},
        }

    def save_trained_statistics(self, stage_dir: Path) -> None:
        """Write the statistics a training stage gathered into ``stage_dir/reward_state.json`` (MOSLIM
        rewards only), for the run's evaluation to read."""
        if self.moslim is not None and is_main_process():
            atomic_write_json(Path(stage_dir) / REWARD_STATE_FILE, {"reward": self.signature(), **self.state_dict()})

    def load_trained_statistics(self, stage_dirs: Sequence[Path]) -> str | None:
        """Load the statistics of the first of ``stage_dirs`` whose training used this same reward; return
        that directory's name (None if none did, or this is no MOSLIM reward)."""
        if self.moslim is None:
            return None
        for stage_dir in stage_dirs:
            path = Path(stage_dir) / REWARD_STATE_FILE
            if not path.is_file():
                continue
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("reward") == json.loads(json.dumps(self.signature())):
                self.load_state_dict(saved)
                self.statistics_source = Path(stage_dir).name
                return self.statistics_source
        return None
