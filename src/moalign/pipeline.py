"""Run a recipe: its stages in order, each starting from the previous stage's checkpoint.

A run resumes (``moalign run RECIPE --resume``, ``moalign resume runs/NAME``) with the recipe it was
started with: finished stages (those with a ``stage.json``) are skipped, and the first unfinished one
continues from its latest complete checkpoint, or starts over if it has none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_write_json
from moalign.cost import COST_KEYS, counting_tokens, gpu_count, gpu_seconds
from moalign.errors import UserError
from moalign.eval.evaluate import METRICS_FILE
from moalign.models.loading import remote_code
from moalign.processes import is_main_process, wait_for_everyone
from moalign.recipe import Recipe
from moalign.report.page import build_report
from moalign.run_dir import RunDir
from moalign.stages import STAGES, StageContext


def set_seed(seed: int) -> None:
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def recipe_differences(saved: Any, given: Any, path: str = "") -> list[str]:
    """``path: saved -> given`` for every key where two parsed recipes differ (nested mappings and lists)."""
    if isinstance(saved, dict) and isinstance(given, dict):
        out: list[str] = []
        for key in [*saved, *(k for k in given if k not in saved)]:
            sub = f"{path}.{key}" if path else str(key)
            out += recipe_differences(saved.get(key, "<absent>"), given.get(key, "<absent>"), sub)
        return out
    if isinstance(saved, list) and isinstance(given, list) and len(saved) == len(given):
        pairs = enumerate(zip(saved, given, strict=True))
        return [d for i, (a, b) in pairs for d in recipe_differences(a, b, f"{path}[{i}]")]
    return [] if saved == given else [f"{path or '<root>'}: {saved!r} -> {given!r}"]


def _check_resumable(run: RunDir, recipe: Recipe) -> None:
    """Refuse to resume ``run`` with a recipe other than the one it was started with."""
    import yaml

    differences = recipe_differences(yaml.safe_load(run.config_path.read_text()), yaml.safe_load(recipe.to_yaml()))
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise UserError(
            f"the recipe differs from the one this run was started with ({shown}); resume it with its own "
            f"recipe (moalign resume {run.root}) or start a new run",
            source=str(run.config_path),
        )


def finish_stage_model(ctx: StageContext, config: Any, output: Path) -> None:
    """Make the model a stage saved in its directory load as exactly what the stage trained, from anywhere.

    A LoRA adapter is rebased onto the stage's input model (peft names the root of the chain, which
    would drop every earlier stage), written relative to the adapter inside the run; and the model gets
    moalign's card (lineage, recipe, stage, settings) in place of peft's template. Models a stage hands on
    from elsewhere are left as they are.
    """
    from moalign.models.card import stage_card, write_card
    from moalign.models.loading import is_adapter, model_chain, rebase_adapter

    if not output.is_dir() or not output.resolve().is_relative_to(ctx.dir.resolve()):
        return
    adapter = is_adapter(str(output))
    if adapter:
        rebase_adapter(output, ctx.model, ctx.run.root)
    card = stage_card(
        recipe=ctx.recipe.name,
        stage=ctx.run.stage_name(ctx.index, ctx.stage_type),
        stage_type=ctx.stage_type,
        chain=[f"{p} (in this run)" if p != m else m for m in model_chain(ctx.model) if (p := ctx.run.portable(m))],
        adapter=adapter,
        settings=config.model_dump(mode="json", exclude_unset=True),
    )
    write_card(output, card)


def require_trained(ctx: StageContext, config: Any, trained: int) -> None:
    """A :class:`UserError` (the stage is not recorded as finished) if it trained fewer tokens than its
    first step needs (:attr:`moalign.budget.Budget.first_step` of the budget its stage declares)."""
    estimate = STAGES.get(ctx.stage_type).budget
    needed = estimate(config).first_step if estimate is not None else 0
    if trained < needed:
        raise UserError(
            f"trained {trained} tokens, fewer than the {needed} its first step needs: not recorded as finished",
            source=ctx.run.stage_name(ctx.index, ctx.stage_type),
        )


def _rewind_stage(ctx: StageContext) -> None:
    """Before resuming an unfinished stage: drop its incomplete checkpoints and the metrics it logged after
    its latest complete one (those steps run again)."""
    from moalign.training.checkpoint import checkpoint_state, discard_incomplete, latest_complete_checkpoint

    discard_incomplete(ctx.checkpoint_dir)
    latest = latest_complete_checkpoint(ctx.checkpoint_dir)
    size = checkpoint_state(latest).get("metrics_bytes") if latest is not None else None
    ctx.run.rewind_metrics(ctx.run.stage_name(ctx.index, ctx.stage_type), size)


def resume_run(run_dir: str | Path) -> RunDir:
    """Continue the run in ``run_dir`` with the recipe saved in it (``config.resolved.yaml``)."""
    from moalign.recipe import load_recipe

    run = RunDir.existing(run_dir)
    recipe = load_recipe(run.config_path)
    if recipe.name != run.root.name:
        raise UserError(
            f"the run is named '{recipe.name}' but its directory is '{run.root.name}'", source=str(run.config_path)
        )
    return run_recipe(recipe, output_dir=run.root.parent, resume=True)


def run_recipe(
    recipe: Recipe, *, output_dir: str | Path | None = None, overwrite: bool = False, resume: bool = False
) -> RunDir:
    """Execute every stage of ``recipe`` under ``OUTPUT_DIR/NAME`` and write ``summary.json``.

    ``resume``: continue the run already in that directory (or start it if there is none); ``overwrite``:
    replace it. The directory is locked for the whole run.
    """
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    run = RunDir(Path(output_dir or recipe.output_dir) / recipe.name)
    with run.locked(), remote_code(recipe.trust_remote_code):
        return _run_locked(run, recipe, overwrite=overwrite, resume=resume)


def _run_locked(run: RunDir, recipe: Recipe, *, overwrite: bool, resume: bool) -> RunDir:
    resume = resume and run.config_path.is_file()
    if is_main_process():  # the other processes of an accelerate launch wait for the directory
        if resume:
            _check_resumable(run, recipe)
        elif not run.is_empty():
            if not overwrite:
                raise UserError(
                    f"run directory '{run.root}' already exists; pass --overwrite to replace it or --resume to "
                    "continue it"
                )
            run.clear()
        if not resume:
            run.write_config(recipe.to_yaml())
    wait_for_everyone()
    if recipe.sweep is not None:  # MORLHF: one run of the stages per weight vector, in sub-directories
        from moalign.sweep import run_sweep

        return run_sweep(run, recipe, lambda point: run_recipe(point, output_dir=run.root, resume=resume))
    model = recipe.model
    stages: list[dict[str, Any]] = []
    t_run = time.time()
    earlier = 0.0  # the wall time of the stages an earlier command finished (a resumed run)
    for index, spec in enumerate(recipe.stages, start=1):
        ctx = StageContext(recipe=recipe, run=run, index=index, stage_type=spec.type, model=model, seed=recipe.seed)
        finished = run.stage_record(index, spec.type) if resume else None
        if finished is not None:
            stages.append(finished)
            earlier += finished.get("wall_time_s") or 0.0
            model = run.model_spec(finished["output_model"]) or model
            continue
        if resume and is_main_process():
            _rewind_stage(ctx)
        wait_for_everyone()
        set_seed(recipe.seed + index)
        t0, c0 = time.time(), time.process_time()
        with counting_tokens() as tokens:
            result = STAGES.get(spec.type).run(ctx, spec.config)
        if is_main_process() and (ctx.dir / METRICS_FILE).is_file():  # an evaluation: the report shows it
            build_report(run.root)
        wall = round(time.time() - t0, 3)
        wait_for_everyone()  # every process has finished the stage (and its checkpoint is written)
        require_trained(ctx, spec.config, tokens.trained)
        if is_main_process() and result.model is not None:
            finish_stage_model(ctx, spec.config, Path(result.model))
        record = {
            "stage": f"{index:02d}-{spec.type}",
            "type": spec.type,
            "input_model": run.portable(model),
            "output_model": run.portable(result.model),
            "wall_time_s": wall,
            "cpu_time_s": round(time.process_time() - c0, 3),
            "gpu_time_s": gpu_seconds(wall, gpu_count()),
            "tokens_generated": tokens.generated,
            "tokens_trained": tokens.trained,
            "summary": result.summary,
        }
        if is_main_process():
            atomic_write_json(ctx.dir / "stage.json", record)
        ctx.log({f"stage/{k}": record[k] for k in COST_KEYS if record[k] is not None})
        stages.append(record)
        model = result.model or model
    if is_main_process():
        final = run.portable(model)
        wall = round(earlier + time.time() - t_run, 3)
        run.write_summary({"name": recipe.name, "final_model": final, "wall_time_s": wall, "stages": stages})
    return run
