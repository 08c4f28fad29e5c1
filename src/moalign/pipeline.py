"""Run a recipe: its stages in order, each starting from the previous stage's checkpoint."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_write_json
from moalign.config import Recipe
from moalign.cost import COST_KEYS, counting_tokens, gpu_count, gpu_seconds
from moalign.errors import UserError
from moalign.run_dir import RunDir
from moalign.stages import STAGES, StageContext


def set_seed(seed: int) -> None:
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def run_recipe(recipe: Recipe, *, output_dir: str | Path | None = None, overwrite: bool = False) -> RunDir:
    """Execute every stage of ``recipe`` under ``OUTPUT_DIR/NAME`` and write ``summary.json``."""
    root = Path(output_dir or recipe.output_dir) / recipe.name
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise UserError(f"run directory '{root}' already exists; pass --overwrite to replace it")
        shutil.rmtree(root)
    run = RunDir(root)
    run.write_config(recipe.to_yaml())
    model = recipe.model
    stages: list[dict[str, Any]] = []
    t_run = time.time()
    for index, spec in enumerate(recipe.stages, start=1):
        ctx = StageContext(recipe=recipe, run=run, index=index, stage_type=spec.type, model=model, seed=recipe.seed)
        set_seed(recipe.seed + index)
        t0, c0 = time.time(), time.process_time()
        with counting_tokens() as tokens:
            result = STAGES.get(spec.type).run(ctx, spec.config)
        wall = round(time.time() - t0, 3)
        record = {
            "stage": f"{index:02d}-{spec.type}",
            "type": spec.type,
            "input_model": model,
            "output_model": result.model,
            "wall_time_s": wall,
            "cpu_time_s": round(time.process_time() - c0, 3),
            "gpu_time_s": gpu_seconds(wall, gpu_count()),
            "tokens_generated": tokens.generated,
            "tokens_trained": tokens.trained,
            "summary": result.summary,
        }
        atomic_write_json(ctx.dir / "stage.json", record)
        ctx.log({f"stage/{k}": record[k] for k in COST_KEYS if record[k] is not None})
        stages.append(record)
        model = result.model or model
    run.write_summary(
        {"name": recipe.name, "final_model": model, "wall_time_s": round(time.time() - t_run, 3), "stages": stages}
    )
    return run
