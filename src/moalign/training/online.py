"""The project's compact on-policy loop (for the stages TRL lacks: reward-weighted likelihood, ...).

Each step: take a batch of prompts, sample ``num_generations`` completions per prompt with the current
policy, score them with the recipe's multi-objective reward, and minimise a stage-specific loss on
the samples. accelerate handles devices, mixed precision and gradient accumulation; the loop knows
nothing about the model beyond ``generate`` and a forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.generation import SamplingConfig
from moalign.training.args import LoraSpec, accelerator_available, resolve_bf16
from moalign.training.rollout import Rollout, sample_rollout


class OnlineStageConfig(StrictModel):
    """Keys shared by on-policy stages (TRL's GRPO names where one exists)."""

    dataset: str
    """Prompt records: a ``prompt`` column (text, tags allowed, or a chat) plus any columns the scorers read."""
    split: str = "train"
    num_samples: int | None = Field(None, gt=0)
    """Use only the first N prompts."""
    learning_rate: float = 1e-5
    per_device_train_batch_size: int = Field(4, gt=0)
    """Prompts per step."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    num_generations: int = Field(4, gt=0)
    """Completions sampled per prompt (the group)."""
    max_completion_length: int = Field(64, gt=0)
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_steps: int = Field(10, gt=0)
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | None = None
    logging_steps: int = Field(1, gt=0)
    generation_batch_size: int = Field(16, gt=0)
    peft: LoraSpec | None = None

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p)


StepLoss = Callable[[Any, Rollout, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
"""``loss(model, rollout, rewards[B*k]) -> (scalar loss, metrics)``."""


def prompt_batches(records: list[dict[str, Any]], batch_size: int, seed: int):
    """Endless shuffled batches of prompt records (a new permutation each epoch)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(records), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [records[i] for i in order[start : start + batch_size]]


def train_online(ctx: Any, config: OnlineStageConfig, step_loss: StepLoss) -> str:
    """Run the loop for ``config.max_steps`` steps; return the saved final checkpoint directory."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    from moalign.data.specs import first, load_dataset_spec
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.rewards import MultiObjectiveReward
    from moalign.training.checkpoint import save_final_model

    if not ctx.recipe.objectives:
        raise UserError(f"stage {ctx.index:02d}-{ctx.stage_type} needs the recipe's 'objectives' to score samples")
    records = first(load_dataset_spec(config.dataset, split=config.split, ctx=ctx), config.num_samples).to_list()
    if len(records) < config.per_device_train_batch_size:
        raise UserError(
            f"{len(records)} prompts, fewer than per_device_train_batch_size={config.per_device_train_batch_size}",
            source=config.dataset,
        )
    if "prompt" not in records[0]:
        raise UserError(f"prompt records need a 'prompt' column; found {sorted(records[0])}", source=config.dataset)

    accelerator = Accelerator(
        cpu=not accelerator_available(),
        mixed_precision="bf16" if resolve_bf16(config.bf16) else "no",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )
    tokenizer = load_tokenizer(ctx.model)
    model = load_causal_lm(ctx.model)
    if config.peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, config.peft.to_peft())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, config.warmup_steps, config.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = 0
    reward = MultiObjectiveReward.from_recipe(ctx.recipe, log=lambda m: ctx.log(m, step=step))
    batches = prompt_batches(records, config.per_device_train_batch_size, ctx.seed)
    from tqdm.auto import tqdm

    for step in tqdm(range(1, config.max_steps + 1), desc=f"{ctx.stage_type}", unit="step"):
        rows = next(batches)
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        t0 = time.perf_counter()
        with accelerator.autocast():
            rollout = sample_rollout(
                accelerator.unwrap_model(model),
                tokenizer,
                [r["prompt"] for r in rows],
                columns,
                config.num_generations,
                config.sampling(),
                batch_size=config.generation_batch_size,
            )
        t_gen = time.perf_counter() - t0
        rewards = torch.tensor(reward(rollout.prompts, rollout.completions, **rollout.columns), dtype=torch.float32)
        model.train()
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss, metrics = step_loss(model, rollout, rewards)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if step % config.logging_steps == 0 or step == config.max_steps:
            lengths = [len(c) for c in rollout.completion_ids]
            ctx.log(
                {
                    "train/loss": loss.item(),
                    "train/learning_rate": scheduler.get_last_lr()[0],
                    "gen/tokens_per_s": rollout.num_tokens / max(t_gen, 1e-9),
                    "gen/mean_length": sum(lengths) / len(lengths),
                    "time/generation_s": t_gen,
                    "time/step_s": time.perf_counter() - t0,
                    **metrics,
                },
                step=step,
            )
    return str(save_final_model(accelerator.unwrap_model(model), tokenizer, ctx.dir / "model"))
