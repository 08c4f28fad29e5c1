"""DPO benchmark: the project's DPO configuration versus TRL's ``DPOTrainer`` with its defaults.

Both sides train the same model on the same preference pairs at the same batch size for the same
number of steps; the first ``warmup`` steps are not timed. Figures per side: trained tokens per
second (the non-padding tokens of the chosen and rejected sequences, the same count for both
sides), model FLOP utilisation against the measured peak of the precision the side ran in, and
peak resident memory. MFU counts the token positions a side computes: TRL's are the trained tokens
(padding excluded); the project's shared-prompt rows hold each prompt once, so its positions are
fewer than its trained tokens. Precomputed reference log-probabilities are charged to the project
at the timed steps' share of the pairs.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from moalign.bench.baseline import trl_default_bf16
from moalign.bench.measure import PeakRSS, StepTimes
from moalign.bench.workload import bench_pairs


def dpo_flops_per_token(n_params: int, *, trains_weights: bool) -> float:
    """Model FLOPs per trained token of one DPO step: ``(2 + 2 + 2 + 2*trains_weights) * N``.

    Reference forward 2N, policy forward 2N, gradient with respect to activations 2N and, when the
    weights themselves train (not LoRA), with respect to the weights 2N (the 6N rule plus the
    reference). Attention's sequence-length term is left out (under 5 % at these lengths);
    recomputation by gradient checkpointing is overhead, not model FLOPs.
    """
    return (8 if trains_weights else 6) * n_params


class PackedTokens(TrainerCallback):
    """The shared-prompt trainer's ``packed_tokens`` after each step (None for TRL's trainer)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.after_step: list[int | None] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.after_step.append(getattr(self.trainer, "packed_tokens", None))


def _measure(build: Any, *, warmup: int, peak: dict[str, float], trains_weights: bool) -> dict[str, Any]:
    """Build a trainer with ``build(callbacks)``, train it and summarise its timed steps."""
    from trl import DPOTrainer

    from moalign.training.trl_fence import timed_reference_precompute

    times = StepTimes()
    record: dict[str, float] = {}
    with PeakRSS() as rss:
        with timed_reference_precompute(DPOTrainer, record):
            trainer = build([times])
        packed = PackedTokens(trainer)
        trainer.add_callback(packed)
        trainer.train()
    n_params = sum(p.numel() for name, p in trainer.model.named_parameters() if "lora_" not in name)
    seen = [0, *times.tokens_seen]
    tokens = seen[-1] - seen[warmup]
    computed = [0, *packed.after_step]
    positions = tokens if computed[-1] is None else computed[-1] - computed[warmup]
    seconds = sum(times.seconds[warmup:])
    steps = len(times.seconds)
    seconds += record.get("precompute_s", 0.0) * (steps - warmup) / steps
    rate = tokens / seconds
    flops = dpo_flops_per_token(n_params, trains_weights=trains_weights)
    return {
        "tokens_per_s": rate,
        "computed_tokens_per_step": positions / max(steps - warmup, 1),
        "step_s": seconds / max(steps - warmup, 1),
        "tokens_per_step": tokens / max(steps - warmup, 1),
        "precompute_s": record.get("precompute_s", 0.0),
        "mfu": positions / seconds * flops / (peak["bf16_gflops" if trainer.args.bf16 else "fp32_gflops"] * 1e9),
        "peak_rss_mib": rss.peak_mib,
        "bf16": bool(trainer.args.bf16),
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "reference_copy": trainer.ref_model is not None,
    }


def time_dpo(
    model: str,
    *,
    peak: dict[str, float],
    batch_size: int = 4,
    steps: int = 3,
    warmup: int = 1,
    project: dict[str, Any] | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
    workdir: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Trained tokens/s, MFU and peak RSS of both sides, and ``speedup`` (project over TRL defaults).

    ``project`` overrides keys of :class:`~moalign.stages.dpo.DPOStageConfig` (its defaults otherwise);
    each of ``variants`` (name -> further overrides, e.g. LoRA) is measured too, against the same
    baseline run. ``peak`` is :func:`moalign.bench.peak.machine_peak`'s result.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.stages.dpo import DPOStageConfig, dpo_trainer, preference_records

    total = warmup + steps
    pairs = preference_records(Dataset.from_list(bench_pairs(batch_size * total, seed=seed)), "bench")
    trl_bf16, note = trl_default_bf16()

    def build_trl(callbacks: list[Any]) -> Any:
        args = DPOConfig(
            output_dir=str(workdir / "trl-dpo"),
            use_cpu=True,
            bf16=trl_bf16,
            per_device_train_batch_size=batch_size,
            max_steps=total,
            report_to="none",
            include_num_input_tokens_seen="non_padding",  # counts tokens; costs one sum per step
            seed=seed,
        )
        return DPOTrainer(
            model=load_causal_lm(model),
            ref_model=load_causal_lm(model),  # what TRL builds itself, from a path it may not resolve
            args=args,
            train_dataset=pairs,
            processing_class=load_tokenizer(model, padding_side="right"),
            callbacks=callbacks,
        )

    def measure_project(overrides: dict[str, Any], name: str) -> dict[str, Any]:
        config = DPOStageConfig(
            **{
                "dataset": "bench",
                "per_device_train_batch_size": batch_size,
                "max_steps": total,
                "logging_steps": 10,
                **overrides,
            }
        )

        def build(callbacks: list[Any]) -> Any:
            output_dir = workdir / f"moalign-dpo-{name}"
            return dpo_trainer(config, model, pairs, None, output_dir=output_dir, seed=seed, callbacks=callbacks)

        ours = _measure(build, warmup=warmup, peak=peak, trains_weights=config.peft is None)
        return {
            **ours,
            "lora": config.peft is not None,
            "precompute_ref_log_probs": config.precompute_ref_log_probs,
            "shared_prompt": config.shared_prompt,
            "speedup": ours["tokens_per_s"] / baseline["tokens_per_s"],
        }

    baseline = _measure(build_trl, warmup=warmup, peak=peak, trains_weights=True)
    ours = measure_project(project or {}, "project")
    extras = {name: measure_project({**(project or {}), **extra}, name) for name, extra in (variants or {}).items()}
    return {
        "model": model,
        "batch_pairs": batch_size,
        "steps": steps,
        "baseline": baseline,
        "project": ours,
        "speedup": ours["speedup"],
        "variants": extras,
        "notes": [note] if note else [],
    }
