"""What the TRL-backed online stages (GRPO, RLOO) share: config keys, prompts, the reward bridge, safety rails.

The project's reward layer reaches TRL through TRL's documented reward-function interface
(``reward(prompts=, completions=, **columns) -> list[float | None]``): :class:`TRLReward` scores the
``[B, k]`` matrix, applies the recipe's aggregator (any of them, TRL lacks most), logs each
objective through the stage's ``metrics.jsonl`` and hands TRL one reward per completion, ``None``
where no objective applies. Preference tags stay in the prompt the policy sees (a user message)
and travel as dataset columns; the reward layer strips them before the scorers run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from transformers import TrainerCallback

from moalign.budget import Budget, source_rows, training_steps
from moalign.cost import count_tokens
from moalign.data.specs import record_chat, require_prompt, train_eval_datasets
from moalign.errors import UserError
from moalign.training.args import TrainerStageConfig, trainer_kwargs
from moalign.training.context import Reward, RewardFactory, TrainingStage

if TYPE_CHECKING:
    from moalign.tags import TagDimensions

TRL_ONLY_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
"""Keyword arguments TRL adds to every reward-function call that are not dataset columns."""


class TRLOnlineStageConfig(TrainerStageConfig):
    """Keys of TRL's online trainers (GRPOConfig / RLOOConfig names).

    As in TRL, ``per_device_train_batch_size`` counts completions, not prompts: each step sees
    ``per_device_train_batch_size / num_generations`` prompts per device. With held-out prompts
    (``eval_dataset`` or ``validation_fraction``) and ``eval_steps``, every ``eval_steps`` steps the
    policy samples ``num_generations`` completions for each held-out prompt, the recipe's reward scores
    them (MOSLIM statistics read, not updated), the mean is logged as ``eval/reward``, and the
    checkpoint with the highest one is restored at the end (seed 004 sec. 4.4: "evaluation interval:
    every 20 steps", the best kept); ``early_stopping_patience`` counts evaluations without a better one.
    """

    max_length: int | None = None
    """Not used by online stages (they bound ``max_completion_length``); must stay unset."""
    num_generations: int = Field(4, ge=2)
    """Completions sampled per prompt (the group, k)."""
    max_completion_length: int = Field(64, gt=0)
    temperature: float | list[float] = 1.0
    """Sampling temperature; a list (seed 004 sec. 3.4, "varied temperature settings") spreads its values
    over each prompt's completions (:func:`moalign.training.trl_fence.group_temperatures`). With a list the
    log-probabilities of the loss and of the KL are the policy's own (temperature 1, eq. 6's
    ``log pi_theta(y_i | x)``); samples drawn at another temperature are not re-weighted, as in the paper,
    and with ``num_iterations: 1`` the clipped ratio is 1 at every update, so nothing is clipped (above 1
    the ratio compares the policy with itself at sampling time, still at temperature 1). Needs
    ``shared_prompt`` and no vLLM."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    generation_kwargs: dict[str, Any] | None = None
    """Extra generation settings passed through to TRL (e.g. ``{top_k: 50}``, ``{stop_strings: [...]}``;
    transformers' ``stop_strings`` also match across the prompt's end, so a stop string the chat template's
    last characters can start ends a completion early)."""
    beta: float = Field(0.0, ge=0.0)
    """KL coefficient to the reference (0: no reference model is loaded and no KL is logged)."""
    num_iterations: int = Field(1, gt=0)
    """Optimisation passes per generated batch (mu); above 1 the clipped ratio with ``epsilon`` acts."""
    epsilon: float = Field(0.2, gt=0.0)
    use_vllm: bool = False
    """Generate with vLLM (GPU machines with vLLM installed); HF generation with KV cache otherwise."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    kl_bound: float | None = Field(None, gt=0.0)
    """Stop training once the logged KL to the reference exceeds this (needs ``beta > 0``)."""
    shared_prompt: bool = True
    """Sample a prompt's completions from one prefill and score them from one packed segment, the prompt
    computed once (:class:`moalign.training.trl_fence.SharedPromptMixin`; where it does not apply, TRL's path).
    False: always TRL's."""

    @model_validator(mode="after")
    def _check(self) -> TRLOnlineStageConfig:
        if self.max_length is not None:
            raise ValueError("max_length does not apply to online stages; bound max_completion_length instead")
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) counts completions and must be "
                f"a multiple of num_generations ({self.num_generations})"
            )
        if self.kl_bound is not None and self.beta == 0:
            raise ValueError("kl_bound needs beta > 0 (with beta 0 there is no reference model and no KL)")
        temperatures = self.temperature if isinstance(self.temperature, list) else [self.temperature]
        if not temperatures or any(t <= 0 for t in temperatures):
            raise ValueError(f"temperature must be > 0 (or a non-empty list of such), got {self.temperature}")
        if isinstance(self.temperature, list):
            if len(self.temperature) > self.num_generations:
                raise ValueError(
                    f"{len(self.temperature)} temperatures for groups of num_generations={self.num_generations}"
                )
            if not self.shared_prompt or self.use_vllm:
                raise ValueError("a list of temperatures needs shared_prompt: true and use_vllm: false")
        return self


class TRLReward:
    """The recipe's multi-objective reward as one TRL reward function (named ``moalign``)."""

    __name__ = "moalign"

    def __init__(self, reward: Reward, log: Any) -> None:
        self.reward = reward
        self._log = log
        self._step = 0
        self._prefix = ""
        self.training: Any = lambda: True
        """Whether the trainer is training (not evaluating held-out prompts); set once the trainer exists."""
        reward.log = lambda metrics: self._log({self._prefix + k: v for k, v in metrics.items()}, step=self._step)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        state = kwargs.get("trainer_state")
        training = self.training()
        if training:
            self._step = (state.global_step + 1) if state is not None else self._step + 1
        columns = {k: v for k, v in kwargs.items() if k not in TRL_ONLY_KWARGS}
        count_tokens(generated=sum(len(ids) for ids in kwargs.get("completion_ids") or []))
        self._prefix = "" if training else "eval/"
        rewards = self.reward(prompts, completions, frozen=not training, **columns)
        return [None if math.isnan(r) else r for r in rewards]


def prompt_records(dataset: Any, source: str) -> Any:
    """Prompt records for TRL's conversational format: ``prompt`` becomes a chat, other columns stay."""
    if "prompt" not in dataset.column_names:
        raise UserError(f"prompt records need a 'prompt' column; found {dataset.column_names}", source=source)

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        require_prompt(row["prompt"], index, source)
        return {"prompt": record_chat(row, "prompt", "user", index, source)}

    return dataset.map(convert, with_indices=True)


def prompts_per_step(config: TRLOnlineStageConfig) -> int:
    """Prompts one optimisation step takes: its completions (``per_device_train_batch_size`` x
    ``gradient_accumulation_steps`` on each process) over ``num_generations``; TRL's sampler drops a
    shorter batch, so fewer prompts train nothing."""
    from moalign.processes import world_size

    completions = config.per_device_train_batch_size * config.gradient_accumulation_steps * world_size()
    return completions // config.num_generations


def trl_online_budget(config: TRLOnlineStageConfig) -> Budget:
    """Generated tokens of a TRL online stage: ``per_device_train_batch_size`` x ``gradient_accumulation_steps``
    completions of ``max_completion_length`` a step; its first step trains the completions of
    :func:`prompts_per_step` prompts."""
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps  # completions
    rows = source_rows(config.dataset, config.num_samples)
    completions = None if rows is None else rows * config.num_generations
    steps = training_steps(config.max_steps, completions, config.num_train_epochs, per_step)
    first_step = prompts_per_step(config) * config.num_generations
    return Budget(steps, per_step, config.max_completion_length, "generated tokens", first_step=first_step)


def check_trl_online_data(config: TRLOnlineStageConfig, tag_dimensions: TagDimensions) -> None:
    """What :func:`run_trl_online` checks of the stage's whole dataset before loading a model, without a run."""
    train_eval_datasets(config, None, prompt_records, tag_dimensions, prompts_per_step(config))


def online_trainer_kwargs(config: TRLOnlineStageConfig, output_dir: Any, seed: int) -> dict[str, Any]:
    """The keys of ``GRPOConfig`` and ``RLOOConfig`` the online stages share, the trainer's keys included
    (the best checkpoint is the one with the highest held-out reward)."""
    if config.use_vllm:
        from transformers.utils.import_utils import is_vllm_available

        if not is_vllm_available():
            raise UserError("use_vllm: true needs vLLM installed (pip install vllm) on a GPU machine")
    has_eval = bool(config.eval_dataset or config.validation_fraction)
    return {
        **trainer_kwargs(config, output_dir, seed=seed, has_eval=has_eval, best_metric="eval_reward"),
        "num_generations": config.num_generations,
        "max_completion_length": config.max_completion_length,
        "temperature": 1.0 if isinstance(config.temperature, list) else config.temperature,
        "top_p": config.top_p,
        "generation_kwargs": config.generation_kwargs,
        "beta": config.beta,
        "num_iterations": config.num_iterations,
        "epsilon": config.epsilon,
        "use_vllm": config.use_vllm,
        "vllm_mode": config.vllm_mode,
    }


def online_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The safety-rail metrics under the project's names: ``kl``, ``gen/mean_length``, ``gen/clipped_ratio``."""
    names = {"kl": "kl", "completions/mean_length": "gen/mean_length", "completions/clipped_ratio": "gen/clipped_ratio"}
    return {ours: float(logs[theirs]) for theirs, ours in names.items() if theirs in logs}


class KLBoundCallback(TrainerCallback):
    """Stop training once a logged ``kl`` passes ``bound`` (safety rail)."""

    def __init__(self, bound: float, log: Any) -> None:
        self.bound = bound
        self._log = log

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kl = (logs or {}).get("kl")
        if kl is not None and kl > self.bound:
            control.should_training_stop = True
            self._log({"safety/kl_stop": float(kl)}, step=state.global_step)


def name_reference_weights(model: Any, tokenizer: Any, spec: str, scratch: Path) -> None:
    """Make ``model.config._name_or_path`` a directory holding ``model``'s weights, for TRL's reference.

    With ``beta > 0`` and no LoRA, TRL's GRPO and RLOO load their reference model from that name. A
    model merged from a chain of LoRA adapters carries the name of the chain's root, which would make
    the reference the root without the earlier stages; such a model is saved whole into ``scratch``
    (once per stage) and named instead. Models loaded from a plain directory keep their name.
    """
    from moalign.models.loading import is_adapter
    from moalign.models.saving import save_final_model
    from moalign.processes import wait_for_everyone

    if not is_adapter(spec):
        return
    save_final_model(model, tokenizer, scratch)
    wait_for_everyone()
    model.config._name_or_path = model.name_or_path = str(scratch)


def run_trl_online(
    ctx: TrainingStage, config: TRLOnlineStageConfig, trainer_cls: Any, args: Any, *, make_reward: RewardFactory
) -> tuple[Any, Any]:
    """Build and train a TRL online trainer on the recipe's prompts and reward; returns ``(trainer, output)``.

    ``args`` is the TRL ``*Config`` built by the stage; ``make_reward(None)`` builds the stage's reward. The
    model, the reward bridge and the callbacks are the same for every online stage.
    """
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training.callbacks import trainer_callbacks
    from moalign.training.checkpoint import train_resuming

    dims = ctx.tag_dimensions
    train, evaluation = train_eval_datasets(config, ctx, prompt_records, dims, prompts_per_step(config))
    reward = TRLReward(make_reward(None), ctx.log)
    callbacks = trainer_callbacks(
        ctx, config, evaluation is not None, derive=online_metrics, state=lambda: {"reward": reward.reward.state_dict()}
    )
    if config.kl_bound is not None:
        callbacks.append(KLBoundCallback(config.kl_bound, ctx.log))
    model, tokenizer = load_causal_lm(ctx.model), load_tokenizer(ctx.model, padding_side="left")
    if config.peft is None and config.beta > 0:
        name_reference_weights(model, tokenizer, ctx.model, ctx.dir / "reference")
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=config.peft.to_peft() if config.peft else None,
        callbacks=callbacks,
    )
    if isinstance(config.temperature, list):
        trainer.sampling_temperatures = list(config.temperature)
    reward.training = lambda: trainer.model.training
    output = train_resuming(trainer, restore=lambda state: reward.reward.load_state_dict(state["reward"]))
    reward.reward.save_trained_statistics(ctx.dir)
    return trainer, output
