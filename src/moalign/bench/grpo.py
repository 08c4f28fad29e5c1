"""GRPO benchmark: a step of the project's GRPO configuration versus TRL's ``GRPOTrainer`` defaults.

Equal settings on both sides: the same prompts, ``num_generations`` completions per prompt of at most
``max_completion_length`` tokens, one prompt group per step, the same KL coefficient (TRL's default
``beta``, 0: no reference forward), the same cheap reward (a step's cost is generation and the policy
update, not scoring). Variants (the stage's own ``beta``, say) run against the same baseline. Each
step is split into generation (TRL's ``_generate_and_score_completions``, which includes the
reference forward when ``beta`` > 0) and update (the rest of the step); the first ``warmup`` steps
are not timed. Sampled completions differ in length between the sides, so the figures are rates.
"""

from __future__ import annotations

import time
from typing import Any

from moalign.bench.baseline import trl_default_bf16
from moalign.bench.measure import PeakRSS, StepTimes
from moalign.bench.workload import bench_prompts


def brevity(completions: list[Any], **kwargs: Any) -> list[float]:
    """The bench's reward: shorter is better (a TRL reward function; cheap on purpose)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [-len(text) / 100.0 for text in texts]


def _measure(trainer: Any, times: StepTimes, *, warmup: int) -> dict[str, Any]:
    """Train ``trainer`` with its generation timed; summarise the steps after ``warmup``."""
    generate = trainer._generate_and_score_completions
    gen_seconds: list[float] = []
    gen_tokens: list[int] = []
    completions: list[int] = []

    def timed(inputs: Any) -> Any:
        start = time.perf_counter()
        output = generate(inputs)
        gen_seconds.append(time.perf_counter() - start)
        gen_tokens.append(int(output["completion_mask"].sum()))
        completions.append(int(output["completion_mask"].shape[0]))
        return output

    trainer._generate_and_score_completions = timed
    with PeakRSS() as rss:
        trainer.train()
    step_s = sum(times.seconds[warmup:])
    generation_s = sum(gen_seconds[warmup:])
    return {
        "step_s": step_s / len(times.seconds[warmup:]),
        "generation_s": generation_s / len(gen_seconds[warmup:]),
        "update_s": (step_s - generation_s) / len(times.seconds[warmup:]),
        "completions_per_s": sum(completions[warmup:]) / step_s,
        "generated_tokens_per_s": sum(gen_tokens[warmup:]) / generation_s,
        "peak_rss_mib": rss.peak_mib,
        "bf16": bool(trainer.args.bf16),
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "beta": float(trainer.args.beta),
    }


def time_grpo(
    model: str,
    *,
    num_generations: int = 8,
    max_completion_length: int = 48,
    steps: int = 2,
    warmup: int = 1,
    project: dict[str, Any] | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
    workdir: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-step generation and update seconds, completions/s and generated tokens/s of both sides, and
    ``speedup`` (project over TRL defaults, in completions per second).

    ``project`` overrides keys of :class:`~moalign.stages.grpo.GRPOStageConfig` (its defaults otherwise,
    with TRL's ``beta``); each of ``variants`` (name -> further overrides) is measured too.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.stages.grpo import GRPOStageConfig, grpo_args, grpo_trainer_class
    from moalign.training.trl_online import prompt_records

    total = warmup + steps
    prompts = prompt_records(Dataset.from_list([{"prompt": p} for p in bench_prompts(total, seed=seed)]), "bench")
    trl_bf16, note = trl_default_bf16()
    shared = {
        "per_device_train_batch_size": num_generations,
        "num_generations": num_generations,
        "max_completion_length": max_completion_length,
        "max_steps": total,
        "beta": GRPOConfig.__dataclass_fields__["beta"].default,
    }

    times = StepTimes()
    args = GRPOConfig(
        output_dir=str(workdir / "trl-grpo"), use_cpu=True, bf16=trl_bf16, report_to="none", seed=seed, **shared
    )
    trainer = GRPOTrainer(
        model=load_causal_lm(model),
        reward_funcs=brevity,
        args=args,
        train_dataset=prompts,
        processing_class=load_tokenizer(model, padding_side="left"),
        callbacks=[times],
    )
    baseline = _measure(trainer, times, warmup=warmup)
    del trainer

    def measure_project(overrides: dict[str, Any], name: str) -> dict[str, Any]:
        config = GRPOStageConfig(**{"dataset": "bench", "logging_steps": 10, **shared, **overrides})
        times = StepTimes()
        trainer = grpo_trainer_class(config)(
            model=load_causal_lm(model),
            reward_funcs=brevity,
            args=grpo_args(config, workdir / f"moalign-grpo-{name}", seed),
            train_dataset=prompts,
            processing_class=load_tokenizer(model, padding_side="left"),
            peft_config=config.peft.to_peft() if config.peft else None,
            callbacks=[times],
        )
        ours = _measure(trainer, times, warmup=warmup)
        speedup = ours["completions_per_s"] / baseline["completions_per_s"]
        return {**ours, "lora": config.peft is not None, "speedup": speedup}

    ours = measure_project(project or {}, "project")
    extras = {name: measure_project({**(project or {}), **extra}, name) for name, extra in (variants or {}).items()}
    return {
        "model": model,
        "num_generations": num_generations,
        "max_completion_length": max_completion_length,
        "steps": steps,
        "baseline": baseline,
        "project": ours,
        "speedup": ours["speedup"],
        "variants": extras,
        "notes": [note] if note else [],
    }
