"""Each paper recipe, scaled down (tiny models, fixture files in the sources' schemas, 1-2 steps), runs end to end.

The scaling is only ``--set`` overrides of the shipped recipe (:func:`scaled_down`), so what runs here is
the recipe's own stage graph, objectives, aggregator and adapters.
"""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from moalign.data.adapters import ADAPTERS
from moalign.pipeline import run_recipe
from moalign.recipe import load_recipe

PAPERS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "papers").glob("*.yaml"))
ROWS = 12


def vary(value, i):
    """The adapter's schema sample with every text made distinct per row (same fields, same nesting)."""
    if isinstance(value, str):
        return value.replace("fruit", f"fruit number {i}").replace("lock", f"lock {i}")
    if isinstance(value, list):
        return [vary(v, i) for v in value]
    if isinstance(value, dict):
        return {k: vary(v, i) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    """One JSONL file per adapter, ``ROWS`` rows in the source's exact schema."""
    root = tmp_path_factory.mktemp("sources")
    out = {}
    for name in ADAPTERS:
        sample = ADAPTERS.get(name).sample
        rows = [vary(copy.deepcopy(sample), i) for i in range(ROWS)]
        if name == "ultrafeedback":  # both ends of the 1-5 scale, so every binning has labels
            for i, row in enumerate(rows):
                row["completions"][0]["annotations"]["helpfulness"]["Rating"] = str(1 + i % 5)
        if name == "ultrasafety":
            for i, row in enumerate(rows):
                row["completions"][0]["annotations"]["harmlessness"][0]["Rating"] = str(i % 2)
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[name] = str(path)
    return out


def dataset_overrides(prefix, value, files):
    if isinstance(value, dict) and "adapter" in value:
        return [f"{prefix}.path={files[value['adapter']]}"]
    if isinstance(value, list):
        return [o for i, v in enumerate(value) for o in dataset_overrides(f"{prefix}.{i}", v, files)]
    return []


STAGE_KEYS = {
    "sft": {"max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64, "eval_steps": None, "num_samples": 4},
    "dpo": {"max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64, "eval_steps": None, "num_samples": 4},
    "grpo": {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 6},
    "rloo": {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 6},
    "rwr": {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 6},
    "ppo": {"max_steps": 1, "per_device_train_batch_size": 2, "max_completion_length": 6, "num_ppo_epochs": 1},
    "online_dpo": {"max_steps": 1, "per_device_train_batch_size": 2, "max_completion_length": 6},
    "reward_model": {"max_steps": 1, "eval_steps": 1, "per_device_train_batch_size": 8, "max_length": 48},
    "eval": {"num_samples": 2, "max_new_tokens": 6, "batch_size": 2, "bootstrap_resamples": 10},
}
"""Per stage type, the keys that make it small; a key is set only where the stage has it."""


def scaled_down(path, files, tiny_llama, tiny_bert):
    """``--set`` overrides that run recipe ``path`` on tiny models and fixture data in seconds."""
    raw = yaml.safe_load(path.read_text())
    out = [f"model={tiny_llama}"]
    for i, objective in enumerate(raw.get("objectives", [])):
        scorer_name, scorer = next(iter(objective["scorer"].items()))
        if scorer_name in ("reward_model", "classifier"):
            out.append(f"objectives.{i}.scorer.{scorer_name}.model={tiny_bert}")
        if scorer_name == "reward_model":
            out.append(f"objectives.{i}.scorer.reward_model.label=0")  # the tiny BERT has two outputs
    for i, stage in enumerate(raw["stages"]):
        ((kind, config),) = stage.items()
        prefix = f"stages.{i}.{kind}"
        out += dataset_overrides(f"{prefix}.dataset", config.get("dataset"), files)
        out += dataset_overrides(f"{prefix}.eval_dataset", config.get("eval_dataset"), files)
        out += [f"{prefix}.{key}={'null' if value is None else value}" for key, value in STAGE_KEYS[kind].items()]
        if "early_stopping_patience" in config:
            out.append(f"{prefix}.early_stopping_patience=null")
        out += dataset_overrides(f"{prefix}.perplexity_dataset", config.get("perplexity_dataset"), files)
        if isinstance(config.get("temperature"), list):  # one temperature per completion of the tiny group
            out.append(f"{prefix}.temperature=[{config['temperature'][0]},{config['temperature'][-1]}]")
        for key in ("dataset", "eval_dataset", "perplexity_dataset"):  # seed 004's validation slices, scaled
            value = config.get(key)
            if isinstance(value, dict) and "[" in value.get("split", ""):
                out.append(f"{prefix}.{key}.split={re.sub(r'[0-9]+', '4', value['split'])}")
        out.append(f"{prefix}.bf16=false") if kind not in ("eval",) else None
        if "length_penalty" in config:
            out += [f"{prefix}.length_penalty.max_new_tokens=6", f"{prefix}.length_penalty.every_n_steps=1"]
        if kind == "reward_model":
            out += [f"{prefix}.backbone={tiny_bert}", f"{prefix}.validation_fraction=0.2"]
        if kind == "eval":
            if "reference" in config:
                out.append(f"{prefix}.reference={tiny_llama}")
            for j, model in enumerate(config.get("models", [])):
                if not model.startswith("stage:"):  # a hub model row (seed 004's base model)
                    out.append(f"{prefix}.models.{j}={tiny_llama}")
            judge = config.get("judge")
            if judge and "reward_model" in judge:
                out += [f"{prefix}.judge.reward_model.model={tiny_bert}", f"{prefix}.judge.reward_model.label=0"]
            if "controllability" in config:
                out += [
                    f"{prefix}.controllability.{key}" for key in ("num_prompts=1", "intensities=[1,2]", "pairs=false")
                ]
    return out


def test_every_paper_is_covered():
    assert {p.name.split("_")[0] for p in PAPERS} == {"seed000", "seed002", "seed004"}


@pytest.mark.parametrize("path", PAPERS, ids=[p.stem for p in PAPERS])
def test_scaled_down_paper_recipe_runs_end_to_end(path, fixture_files, tiny_llama_dir, tiny_bert_dir, tmp_path):
    recipe = load_recipe(path, scaled_down(path, fixture_files, tiny_llama_dir, tiny_bert_dir))
    run = run_recipe(recipe, output_dir=tmp_path)
    summary = json.loads((run.root / "summary.json").read_text())
    assert [s["type"] for s in summary["stages"]] == [s.type for s in recipe.stages]
    last = recipe.stages[-1]
    if last.type == "reward_model":  # seed 002's DataType ablation: the reward models' table
        from moalign.rm.table import markdown_table, reward_model_rows

        rows = reward_model_rows(run.root)
        assert [r["dimensions"] for r in rows] == [s.config.dimensions for s in recipe.stages]
        assert all(r["heads"] and r["validation_samples"] for r in rows)
        assert len(markdown_table(rows).splitlines()) == 2 + len(rows) + 2
        return
    assert last.type == "eval"
    metrics = json.loads((run.root / f"{len(recipe.stages):02d}-eval" / "metrics.json").read_text())
    assert metrics["num_prompts"] == 2
    assert metrics["objectives"] == [o.name for o in recipe.objectives] or last.config.judge is not None
    control = last.config.controllability
    if control is not None:  # seed 002: each dimension swept and measured by the run's reward model
        for sweeps in metrics["controllability"].values():
            assert sorted(sweeps["sweeps"]) == sorted(control.dimensions)
            assert [p["intensity"] for p in sweeps["sweeps"]["helpfulness"]["points"]] == [1, 2]
