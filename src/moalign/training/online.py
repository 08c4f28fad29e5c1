"""The project's compact on-policy loop (for the stages TRL lacks: reward-weighted likelihood, ...).

Each step: take a batch of prompts, sample ``num_generations`` completions per prompt with the current
policy, score them with the recipe's multi-objective reward, and minimise a stage-specific loss on
the samples, one optimisation step of :mod:`moalign.training.loop` (accelerate: devices, mixed precision,
gradient accumulation, checkpoints). It knows nothing about the model beyond ``generate`` and a forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import torch
from pydantic import Field

from moalign.budget import Budget
from moalign.config.base import StrictModel
from moalign.cost import count_tokens
from moalign.data.adapters import DatasetSpec
from moalign.data.specs import DataContext
from moalign.errors import UserError
from moalign.generation import SamplingConfig
from moalign.losses.ppo import kl_estimate
from moalign.precision import resolve_bf16
from moalign.training.args import LoraSpec, stage_accelerator
from moalign.training.checkpoint import checkpoint_state, generator_from_text, generator_text
from moalign.training.context import Reward, RewardFactory, TrainingStage
from moalign.training.logprobs import (
    join_prompt_completion,
    pack_by_prompt,
    packed_logits,
    scatter_packed,
    takes_packed_rows,
    token_logps,
)
from moalign.training.loop import LoopSettings, TrainingLoop
from moalign.training.rollout import Rollout, sample_rollout

if TYPE_CHECKING:
    from moalign.tags import TagDimensions


class OnlineStageConfig(StrictModel):
    """Keys shared by on-policy stages (TRL's GRPO names where one exists)."""

    dataset: DatasetSpec
    """Prompt records: a ``prompt`` column (text, tags allowed, or a chat) plus any columns the scorers read."""
    split: str = "train"
    num_samples: int | None = Field(None, gt=0)
    """Use only the first N prompts."""
    learning_rate: float = Field(1e-5, gt=0.0)
    per_device_train_batch_size: int = Field(4, gt=0)
    """Prompts per step."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    num_generations: int = Field(4, gt=0)
    """Completions sampled per prompt (the group)."""
    max_completion_length: int = Field(64, gt=0)
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop_strings: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """A completion ends with the token that completes the first of these (kept in the completion)."""
    max_steps: int = Field(10, gt=0)
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | None = None
    """bf16 autocast (sampling and updates) over float32 weights; None: where the device runs it natively.
    The recipe's ``precision`` overrides it."""
    logging_steps: int = Field(1, gt=0)
    generation_batch_size: int = Field(16, gt=0)
    peft: LoraSpec | None = None
    kl_bound: float | None = Field(None, gt=0.0)
    """Stop once the per-token KL to the reference passes this (stages that keep a reference)."""
    save_steps: int | None = Field(None, gt=0)
    """Write a resumable checkpoint (model, optimizer, scheduler, RNG states, data position, reward
    statistics) every N steps; ``moalign run --resume`` continues from the latest complete one."""
    save_total_limit: int | None = Field(2, gt=0)
    """Checkpoints kept: the newest N (None: all)."""

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            max_new_tokens=self.max_completion_length,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop_strings),
        )


StepLoss = Callable[[Any, "ScoredRollout", torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
"""``loss(model, samples, rewards[N]) -> (scalar loss, metrics)``; ``samples`` is a :class:`ScoredRollout`
(a :class:`Rollout`, so a loss may read only the text and ids)."""

Prepare = Callable[[Any, "ScoredRollout"], "ScoredRollout"]
"""A stage's no-grad pass over a fresh rollout before its updates (e.g. PPO's values and GAE)."""


@dataclass
class ScoredRollout(Rollout):
    """A rollout with its rewards and the padded tensors every loss needs (on the training device).

    Row ``i`` is sample ``i``; the per-token tensors ``[N, T-1]`` are aligned with the predicted
    tokens ``input_ids[:, 1:]`` and are 0 off the completion.
    """

    rewards: torch.Tensor | None = None
    """``[N]`` aggregated rewards (NaN: no objective applied)."""
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    completion_mask: torch.Tensor | None = None
    """``[N, T]``: 1 on completion tokens."""
    old_logps: torch.Tensor | None = None
    """``[N, T-1]`` per-token log-probs under the policy that sampled (with a reference or several epochs)."""
    ref_logps: torch.Tensor | None = None
    """``[N, T-1]`` per-token log-probs under the frozen reference (``reference=True``)."""
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-sample tensors (first dimension N) a stage's ``prepare`` adds: values, advantages..."""

    @property
    def token_mask(self) -> torch.Tensor:
        """``[N, T-1]``: 1 where the predicted token is a completion token."""
        assert self.completion_mask is not None
        return self.completion_mask[:, 1:]

    def rows(self, index: list[int]) -> ScoredRollout:
        """The minibatch of samples ``index`` (groups are not kept together: ``group_size`` becomes 1)."""
        idx = torch.tensor(index, dtype=torch.long)

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx.to(t.device)]

        return ScoredRollout(
            prompts=[self.prompts[i] for i in index],
            completions=[self.completions[i] for i in index],
            prompt_ids=[self.prompt_ids[i] for i in index],
            completion_ids=[self.completion_ids[i] for i in index],
            columns={k: [v[i] for i in index] for k, v in self.columns.items()},
            group_size=1,
            rewards=take(self.rewards),
            input_ids=take(self.input_ids),
            attention_mask=take(self.attention_mask),
            completion_mask=take(self.completion_mask),
            old_logps=take(self.old_logps),
            ref_logps=take(self.ref_logps),
            extra={k: v[idx.to(v.device)] for k, v in self.extra.items()},
        )


def sample_token_logps(model: Any, samples: ScoredRollout) -> torch.Tensor:
    """``[N, T-1]`` log-probs of the predicted tokens under ``model``, 0 off the completion.

    Samples of one prompt are packed into one segment (the prompt computed once, logits only where a
    completion token is predicted: :func:`~moalign.training.logprobs.pack_by_prompt`) when the model's
    attention takes packed rows; otherwise the padded ``prompt + completion`` rows run as they are.
    Equal either way within float32 rounding (checked by a test).
    """
    assert samples.input_ids is not None
    if not takes_packed_rows(model):
        logits = model(input_ids=samples.input_ids, attention_mask=samples.attention_mask).logits[:, :-1]
        return token_logps(logits, samples.input_ids[:, 1:]) * samples.token_mask.to(torch.float32)
    device = samples.input_ids.device
    packed, order = pack_by_prompt(samples.prompt_ids, samples.completion_ids, pad_id=0)
    packed, order = packed.to(device), order.to(device)
    logits, rows = packed_logits(model, packed)
    logps = token_logps(logits, packed.targets, rows=rows)
    # a token's column is the position predicting it: its prompt's last position, then the completion's own
    pairs = zip(samples.prompt_ids, samples.completion_ids, strict=True)
    columns = [list(range(len(p) - 1, len(p) - 1 + len(c))) for p, c in pairs]
    return scatter_packed(logps, packed, order, columns, samples.input_ids.shape[1] - 1)


@dataclass
class _StepRecord:
    """What the loop logs of the current step beside its loss: when it started, generation figures, the KL."""

    started: float = 0.0
    generation: dict[str, float] = field(default_factory=dict)
    safety: dict[str, float] = field(default_factory=dict)


def clipped_ratio(completion_ids: list[list[int]], max_length: int, eos_ids: set[int]) -> float:
    """Share of completions that hit ``max_length`` without an end-of-turn token (truncated)."""
    clipped = [len(c) >= max_length and (not c or c[-1] not in eos_ids) for c in completion_ids]
    return sum(clipped) / max(len(clipped), 1)


def loop_state(step: int, reward: Reward, shuffle: torch.Generator, metrics_bytes: int) -> dict[str, Any]:
    """What a checkpoint of the loop records beside accelerate's state: the step (the data position: the
    prompt order is a function of the seed and the number of batches drawn), the reward's normaliser
    statistics, the minibatch-shuffle generator and how far ``metrics.jsonl`` had been written."""
    return {
        "step": step,
        "metrics_bytes": metrics_bytes,
        "reward": reward.state_dict(),
        "shuffle_rng": generator_text(shuffle.get_state()),
    }


def restore_loop_state(state: dict[str, Any], reward: Reward, shuffle: torch.Generator) -> int:
    """Load :func:`loop_state` back into ``reward`` and ``shuffle``; returns the step it was taken at."""
    reward.load_state_dict(state["reward"])
    shuffle.set_state(generator_from_text(state["shuffle_rng"]))
    return int(state["step"])


def prompt_batches(records: list[dict[str, Any]], batch_size: int, seed: int):
    """Endless shuffled batches of prompt records (a new permutation each epoch)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(records), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [records[i] for i in order[start : start + batch_size]]


def online_prompt_records(
    config: OnlineStageConfig, ctx: DataContext | None, tag_dimensions: TagDimensions | None
) -> list[dict[str, Any]]:
    """The stage's prompt records, checked whole before any model loads: a ``prompt`` column, no empty
    prompt, tags within ``tag_dimensions``, and a full batch of prompts for every process (the loop draws
    only full batches)."""
    from moalign.data.specs import (
        first,
        load_dataset_spec,
        record_chat,
        require_prompt,
        require_steps,
        require_tags,
    )
    from moalign.processes import world_size

    data = first(load_dataset_spec(config.dataset, split=config.split, ctx=ctx), config.num_samples)
    if "prompt" not in data.column_names:
        raise UserError(f"prompt records need a 'prompt' column; found {data.column_names}", source=config.dataset)
    records = data.to_list()
    for index, record in enumerate(records):
        require_prompt(record["prompt"], index, config.dataset)
        record_chat(record, "prompt", "user", index, config.dataset)
    require_tags([r["prompt"] for r in records], tag_dimensions, config.dataset)
    needed = config.per_device_train_batch_size * world_size()
    require_steps(len(records), needed, config.max_steps, 1.0, config.dataset)
    return records


def online_budget(config: OnlineStageConfig) -> Budget:
    """Generated tokens of a stage on this loop: ``num_generations`` completions of ``max_completion_length``
    for each prompt of a step; its first step trains the samples of one batch of prompts."""
    prompts = config.per_device_train_batch_size * config.gradient_accumulation_steps
    first_step = config.per_device_train_batch_size * config.num_generations
    sequences = prompts * config.num_generations
    return Budget(config.max_steps, sequences, config.max_completion_length, "generated tokens", first_step=first_step)


def check_online_data(config: OnlineStageConfig, tag_dimensions: TagDimensions) -> None:
    """What :func:`train_online` checks of the stage's prompt records before loading a model, without a run."""
    online_prompt_records(config, None, tag_dimensions)


def train_online(
    ctx: TrainingStage,
    config: OnlineStageConfig,
    step_loss: StepLoss,
    *,
    make_reward: RewardFactory,
    reference: bool = False,
    prepare: Prepare | None = None,
    wrap_policy: Callable[[Any], torch.nn.Module] | None = None,
    epochs: int = 1,
    minibatches: int = 1,
) -> str:
    """Run the loop for ``config.max_steps`` steps; return the saved final checkpoint directory.

    ``make_reward(log)`` builds the stage's reward once the models are loaded; it logs at the loop's step.
    ``reference``: keep a frozen copy of the starting model (with LoRA: the adapters disabled) and
    compute ``ref_logps``; the KL to it is then logged each step and ``config.kl_bound`` can stop the
    run. ``prepare`` runs once per rollout (no grad). ``wrap_policy(lm)`` returns the module that is
    trained in place of the LM (it must keep the LM as ``.policy``; e.g. a value head on top); the
    LM alone generates and is saved. Each rollout is used for ``epochs`` passes of ``minibatches``
    shuffled minibatches, one optimizer step each; the learning-rate schedule advances once per step.
    """
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.models.saving import save_final_model

    if config.kl_bound is not None and not reference:
        raise UserError(f"stage {ctx.stage_type} keeps no reference model: kl_bound does not apply")
    records = online_prompt_records(config, ctx, ctx.tag_dimensions)

    bf16 = resolve_bf16(config.bf16)
    accelerator = stage_accelerator(bf16=bf16, gradient_accumulation_steps=config.gradient_accumulation_steps)
    tokenizer = load_tokenizer(ctx.model)
    lm = load_causal_lm(ctx.model)
    if config.peft is not None:
        from peft import get_peft_model

        lm = get_peft_model(lm, config.peft.to_peft())
    ref_model = None
    if reference and config.peft is None:
        ref_model = load_causal_lm(ctx.model).to(accelerator.device).eval().requires_grad_(False)
    settings = LoopSettings(
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        checkpoint_dir=ctx.checkpoint_dir,
    )
    loop = TrainingLoop(accelerator, wrap_policy(lm) if wrap_policy is not None else lm, settings)
    model = loop.model
    policy = accelerator.unwrap_model(model)
    policy = policy.policy if wrap_policy is not None else policy
    eos = policy.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}

    step = 0
    reward = make_reward(lambda m: ctx.log(m, step=step))
    shard = records[accelerator.process_index :: accelerator.num_processes]  # each launched process its share
    batches = prompt_batches(shard, config.per_device_train_batch_size, ctx.seed)
    shuffle = torch.Generator().manual_seed(ctx.seed)
    start = 0
    latest = loop.resume()
    if latest is not None:
        start = restore_loop_state(checkpoint_state(latest), reward, shuffle)
        for _ in range(start):
            next(batches)
    current = _StepRecord()

    def step_batches(n: int) -> Iterator[ScoredRollout]:
        """Sample and score step ``n``'s rollout, then yield its minibatches for each epoch."""
        nonlocal step
        step = n
        rows = next(batches)
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        current.started = time.perf_counter()
        rollout = sample_rollout(
            policy,
            tokenizer,
            [r["prompt"] for r in rows],
            columns,
            config.num_generations,
            config.sampling(),
            batch_size=config.generation_batch_size,
            bf16=bf16,
        )
        t_gen = time.perf_counter() - current.started
        lengths = [len(c) for c in rollout.completion_ids]
        current.generation = {
            "gen/tokens_per_s": rollout.num_tokens / max(t_gen, 1e-9),
            "gen/mean_length": sum(lengths) / len(lengths),
            "gen/clipped_ratio": clipped_ratio(rollout.completion_ids, config.max_completion_length, eos_ids),
            "time/generation_s": t_gen,
        }
        rewards = torch.tensor(reward(rollout.prompts, rollout.completions, **rollout.columns), dtype=torch.float32)
        ids, attn, comp = join_prompt_completion(rollout.prompt_ids, rollout.completion_ids, 0)
        samples = ScoredRollout(
            **vars(rollout),
            rewards=rewards.to(accelerator.device),
            input_ids=ids.to(accelerator.device),
            attention_mask=attn.to(accelerator.device),
            completion_mask=comp.to(accelerator.device),
        )
        current.safety = {}
        if reference or epochs > 1 or prepare is not None:
            with torch.no_grad(), accelerator.autocast():
                samples.old_logps = sample_token_logps(policy, samples)
                if reference:
                    if ref_model is not None:
                        samples.ref_logps = sample_token_logps(ref_model, samples)
                    else:
                        with policy.disable_adapter():
                            samples.ref_logps = sample_token_logps(policy, samples)
                if prepare is not None:
                    samples = prepare(model, samples)
        if samples.ref_logps is not None and samples.old_logps is not None:
            kl = kl_estimate(samples.old_logps, samples.ref_logps, "k1")  # KL(pi || pi_ref) per token
            mask = samples.token_mask.to(kl.dtype)
            current.safety["kl"] = ((kl * mask).sum() / mask.sum().clamp(min=1)).item()
            current.safety["kl/sequence"] = (kl * mask).sum(-1).mean().item()
        model.train()
        n_samples = len(samples.completions)
        for _ in range(epochs):
            order = torch.randperm(n_samples, generator=shuffle).tolist() if minibatches > 1 else list(range(n_samples))
            for chunk in range(minibatches):
                yield samples if minibatches == 1 else samples.rows(order[chunk::minibatches])

    def part_loss(part: ScoredRollout) -> tuple[torch.Tensor, dict[str, float]]:
        assert part.rewards is not None and part.attention_mask is not None
        with accelerator.autocast():
            loss, metrics = step_loss(model, part, part.rewards)
        count_tokens(trained=int(part.attention_mask.sum()))
        return loss, metrics

    def log(n: int, loss: torch.Tensor, metrics: dict[str, float]) -> None:
        timing = {"time/step_s": time.perf_counter() - current.started}
        record = {"train/loss": loss.item(), "train/learning_rate": loop.learning_rate, **current.generation}
        ctx.log({**record, **timing, **current.safety, **metrics}, step=n)

    def kl_stop(n: int) -> bool:
        kl = current.safety.get("kl", 0.0)
        if config.kl_bound is None or kl <= config.kl_bound:
            return False
        ctx.log({"safety/kl_stop": kl}, step=n)
        return True

    loop.run(
        step_batches,
        part_loss,
        start=start,
        log=log,
        stop=kl_stop,
        state=lambda n: loop_state(n, reward, shuffle, ctx.run.metrics_size()),
        desc=ctx.stage_type,
    )
    reward.save_trained_statistics(ctx.dir)
    return str(save_final_model(policy, tokenizer, ctx.dir / "model"))
