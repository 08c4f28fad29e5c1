"""The dry run: what ``moalign run RECIPE --dry-run`` checks and reports, without loading a model.

For a validated recipe it (1) checks every dataset a stage names (a few rows through its adapter, the first
records of a ``builtin:`` spec, local files whole through the stage's declared data check); (2) builds the
stage graph, every ``stage:TYPE[/FILE]`` reference naming an earlier stage; (3) estimates each stage's token
budget with its declared estimator (:mod:`moalign.budget`), an upper bound at the maximum lengths.
Every problem is collected; :func:`dry_run` raises one :class:`UserError` listing them all.

Notes: docs/papers.md#planpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from moalign.budget import Budget
from moalign.data.adapters import AdapterSpec, adapt_rows, load_rows
from moalign.data.specs import STAGE_PREFIX, names_local_file
from moalign.errors import UserError, exception_summary
from moalign.recipe import Recipe
from moalign.stages import STAGES

SCHEMA_ROWS = 5
"""Source rows converted per adapter spec in a dry run."""


@dataclass
class DatasetCheck:
    key: str
    spec: str
    detail: str


@dataclass
class StagePlan:
    index: int
    type: str
    datasets: list[DatasetCheck] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    budget: Budget | None = None

    @property
    def name(self) -> str:
        return f"{self.index:02d}-{self.type}"


@dataclass
class Plan:
    recipe: Recipe
    stages: list[StagePlan]
    problems: list[str]

    @property
    def runs(self) -> int:
        """Full runs of the stages: one per weight vector of a ``sweep`` (MORLHF), else one."""
        return len(self.recipe.sweep.weights) if self.recipe.sweep is not None else 1

    @property
    def total_tokens(self) -> int | None:
        totals = [s.budget.total for s in self.stages if s.budget is not None]
        return None if any(t is None for t in totals) else self.runs * sum(t for t in totals if t is not None)


# -- datasets -----------------------------------------------------------------------------------


def _head(spec: AdapterSpec) -> tuple[list[Any], str]:
    """A few source rows of ``spec`` and where they came from (the schema sample if unreachable)."""
    if names_local_file(spec.source):
        rows = load_rows(spec)  # a local file: UserError if missing or unreadable
        return [rows[i] for i in range(min(SCHEMA_ROWS, len(rows)))], f"{len(rows):,} rows"
    try:
        from datasets import load_dataset

        stream = load_dataset(
            spec.source, spec.config or spec.definition.config, split=spec.resolved_split, streaming=True
        )
        return list(islice(stream, SCHEMA_ROWS)), "hub, streamed head"
    except Exception as exc:  # offline, not cached, no such dataset: check the shipped schema sample
        reason = exception_summary(exc)[:80]
        return [spec.definition.sample], f"schema sample (hub unavailable: {reason})"


def check_adapter(spec: AdapterSpec, stage_type: str) -> str:
    """Convert the head of ``spec``'s source; a :class:`UserError` if a row or the record kind is wrong."""
    wanted = STAGES.get(stage_type).consumes
    if wanted is not None and spec.kind not in wanted:
        raise UserError(f"stage '{stage_type}' reads {' or '.join(wanted)} records, this spec gives {spec.kind}")
    rows, origin = _head(spec)
    records, skipped = adapt_rows(rows, spec)  # a malformed row raises here unless on_malformed: skip
    if not records:
        raise UserError(f"no records from the first {len(rows)} rows ({origin})", source=str(spec))
    dropped = f"; {len(skipped)} of the first {len(rows)} rows skipped, first: {skipped[0]}" if skipped else ""
    return f"{spec.kind} records ok ({origin}{dropped})"


def check_string_spec(spec: str, split: str) -> str:
    """Check a string dataset spec as far as possible without downloading anything."""
    if spec.startswith("builtin:"):
        from moalign.data.sources import load_records

        load_records(spec, split, limit=2)
        return f"built-in, split {split}"
    if spec.startswith(STAGE_PREFIX):
        return "written by an earlier stage"
    if names_local_file(spec):
        if not Path(spec).expanduser().exists():
            raise UserError("dataset file not found", source=spec)
        return "local file"
    return "hub dataset (read when the stage runs)"


def dataset_values(config: Any) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` for each dataset key set in a stage config."""
    for key in ("dataset", "eval_dataset"):
        value = getattr(config, key, None)
        if value is not None:
            yield key, value


def check_datasets(stage_type: str, config: Any, problems: list[str], name: str) -> list[DatasetCheck]:
    checks = []
    split = getattr(config, "split", "train")
    for key, value in dataset_values(config):
        for item in value if isinstance(value, list) else [value]:
            try:
                if isinstance(item, AdapterSpec):
                    detail = check_adapter(item, stage_type)
                else:
                    detail = check_string_spec(item, "validation" if key == "eval_dataset" else split)
            except UserError as exc:
                problems.append(f"{name}.{key}: {exc}")
                detail = "FAILED"
            checks.append(DatasetCheck(key=key, spec=str(item), detail=detail))
    return checks


def local_files_only(config: Any) -> bool:
    """Whether every dataset a stage names is a local file (what the dry run reads whole)."""
    specs = [item for _, value in dataset_values(config) for item in (value if isinstance(value, list) else [value])]
    return all(isinstance(s, str) and not s.startswith(STAGE_PREFIX) and Path(s).expanduser().is_file() for s in specs)


def check_stage_data(stage_type: str, config: Any, tag_dimensions: Any, problems: list[str], name: str) -> None:
    """Read a stage's local data files whole and run the checks it declares (:attr:`StageDef.data_check`) on
    them; a failure joins ``problems``."""
    check = STAGES.get(stage_type).data_check
    if check is None or not local_files_only(config):
        return
    try:
        check(config, tag_dimensions)
    except UserError as exc:
        problems.append(f"{name}.dataset: {exc}")


# -- the stage graph ------------------------------------------------------------------------------


def stage_references(value: Any) -> Iterator[str]:
    """Every ``stage:TYPE[/FILE]`` string at any depth of dicts, lists and models."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, str) and value.startswith(STAGE_PREFIX):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from stage_references(v)
    elif isinstance(value, list):
        for v in value:
            yield from stage_references(v)


def unresolved(references: list[str], earlier: list[str]) -> list[str]:
    """The references whose stage type is not among ``earlier`` stage types."""
    return [r for r in references if r.removeprefix(STAGE_PREFIX).partition("/")[0] not in earlier]


# -- budgets ---------------------------------------------------------------------------------------


def stage_budget(stage_type: str, config: Any) -> Budget | None:
    """The token budget of one stage (:attr:`StageDef.budget`), or None for a stage type without an estimate."""
    estimate = STAGES.get(stage_type).budget
    return None if estimate is None else estimate(config)


# -- the plan ------------------------------------------------------------------------------------------


def plan_recipe(recipe: Recipe) -> Plan:
    """Check datasets and references and estimate budgets for every stage; problems are collected."""
    problems: list[str] = []
    stages: list[StagePlan] = []
    earlier: list[str] = []
    objective_refs = [r for o in recipe.objectives for r in stage_references(o.scorer)]
    for index, spec in enumerate(recipe.stages, start=1):
        plan = StagePlan(index=index, type=spec.type)
        plan.datasets = check_datasets(spec.type, spec.config, problems, plan.name)
        if not any(check.detail == "FAILED" for check in plan.datasets):
            check_stage_data(spec.type, spec.config, recipe.tag_dimensions, problems, plan.name)
        plan.references = list(stage_references(spec.config))
        if STAGES.get(spec.type).scores_samples:
            plan.references += objective_refs
        for ref in unresolved(plan.references, earlier):
            problems.append(f"{plan.name}: '{ref}' names no earlier stage (earlier: {', '.join(earlier) or 'none'})")
        plan.budget = stage_budget(spec.type, spec.config)
        stages.append(plan)
        earlier.append(spec.type)
    return Plan(recipe=recipe, stages=stages, problems=problems)


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def format_plan(plan: Plan) -> str:
    """A human-readable report of a plan."""
    recipe = plan.recipe
    lines = [f"recipe {recipe.name}: model {recipe.model}, seed {recipe.seed}, {len(plan.stages)} stage(s)"]
    for stage in plan.stages:
        lines.append(f"  {stage.name}")
        for check in stage.datasets:
            lines.append(f"    {check.key}: {check.spec} -> {check.detail}")
        if stage.references:
            lines.append(f"    uses: {', '.join(dict.fromkeys(stage.references))}")
        b = stage.budget
        if b is None:
            lines.append("    budget: no estimate for this stage type")
        else:
            steps = "?" if b.steps is None else f"{b.steps:,}"
            lines.append(f"    budget: {steps} steps x {b.sequences} seq x {b.tokens} tok = {_count(b.total)} {b.what}")
    runs = f" over {plan.runs} sweep runs" if plan.runs > 1 else ""
    lines.append(f"total: {_count(plan.total_tokens)} tokens{runs} (upper bound; '?' where the data size is unknown)")
    lines.extend(f"problem: {p}" for p in plan.problems)
    return "\n".join(lines)


def dry_run(recipe: Recipe) -> Plan:
    """The plan of ``recipe``; one :class:`UserError` listing every problem if any was found."""
    plan = plan_recipe(recipe)
    if plan.problems:
        raise UserError(f"dry run of '{recipe.name}' failed:\n" + "\n".join(f"  {p}" for p in plan.problems))
    return plan
