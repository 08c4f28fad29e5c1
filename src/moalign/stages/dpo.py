"""DPO on TRL's DPOTrainer (seed 004 eq. 5, implemented in :func:`moalign.losses.preference.dpo_loss`).

The reference model is a frozen copy of the stage's starting checkpoint; with LoRA it is the same
model with its adapters disabled (no second copy in memory). ``precompute_ref_log_probs`` computes
the reference log-probabilities once before training. ``shared_prompt`` (the default) scores each
pair from one ``prompt + chosen + rejected`` segment (:class:`moalign.training.trl_fence.SharedPromptDPOTrainer`):
the prompt is computed once per pair and the vocabulary projection runs only where a completion
token is scored; the loss is the same :func:`~moalign.losses.preference.dpo_loss`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from moalign.data.specs import record_chat, require_prompt, require_prompts_fit, train_eval_datasets
from moalign.errors import UserError
from moalign.stages.base import StageContext, StageResult, register_stage
from moalign.training.args import TrainerStageConfig, trainer_budget, trainer_kwargs

if TYPE_CHECKING:
    from moalign.tags import TagDimensions


DPO_LOSSES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
"""TRL 1.16's DPO loss types."""


class DPOStageConfig(TrainerStageConfig):
    """Defaults follow seed 004 section 4 (lr 5e-6, beta 0.1, linear schedule, 10 warmup steps)."""

    learning_rate: float = Field(5e-6, gt=0.0)
    warmup_steps: int = 10
    beta: float = Field(0.1, gt=0.0)
    loss_type: str | list[str] = "sigmoid"
    """TRL's ``loss_type``; a list combines losses, each weighted by ``loss_weights``. ``[sigmoid, sft]`` is
    RPO (DPO plus the chosen responses' NLL, :func:`moalign.losses.preference.chosen_nll`)."""
    loss_weights: list[float] | None = None
    """One weight per entry of ``loss_type`` (TRL's default: 1 each); RPO's ``alpha`` is the ``sft`` weight."""
    precompute_ref_log_probs: bool = False
    max_length: int | None = 512
    shared_prompt: bool = True
    """Score each pair from one packed segment, its prompt computed once (sigmoid loss, alone or with ``sft``,
    with SDPA or eager attention; other settings fall back to TRL's two rows per pair). False: always TRL's
    forward."""

    @property
    def loss_types(self) -> list[str]:
        return [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)

    @model_validator(mode="after")
    def _known_losses_one_weight_each(self) -> DPOStageConfig:
        unknown = [name for name in self.loss_types if name not in DPO_LOSSES]
        if unknown:
            raise ValueError(f"loss_type: unknown {unknown} (known: {', '.join(DPO_LOSSES)})")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_types):
            raise ValueError(
                f"loss_weights needs one weight per loss_type: {len(self.loss_weights)} weights for "
                f"{self.loss_types}"
            )
        return self


def preference_records(dataset: Any, source: str) -> Any:
    """Normalise to TRL's conversational preference format: prompt / chosen / rejected chats."""
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise UserError(
            f"preference data needs prompt, chosen and rejected; missing {sorted(missing)} "
            f"(found {dataset.column_names})",
            source=source,
        )

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        require_prompt(row["prompt"], index, source)
        prompt = record_chat(row, "prompt", "user", index, source)
        chosen = record_chat(row, "chosen", "assistant", index, source)
        rejected = record_chat(row, "rejected", "assistant", index, source)
        # UltraFeedback-style rows repeat the prompt inside chosen/rejected: keep only the reply
        if len(chosen) > 1 and chosen[:-1] == prompt:
            chosen, rejected = chosen[-1:], rejected[-1:]
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}

    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)


def dpo_kl(logs: dict[str, Any], beta: float) -> dict[str, float]:
    """``{"kl": mean log-ratio log pi/pi_ref}`` over the pairs' responses: DPO's implicit rewards / beta.

    An estimate of how far the policy moved from the reference on the training responses (seed 004
    figure 4 tracks this drift); it is not the on-policy KL, which needs samples from the policy.
    """
    if "rewards/chosen" not in logs or "rewards/rejected" not in logs:
        return {}
    return {"kl": (logs["rewards/chosen"] + logs["rewards/rejected"]) / (2.0 * beta)}


def dpo_trainer(
    config: DPOStageConfig,
    model_spec: str,
    train: Any,
    evaluation: Any,
    *,
    output_dir: Any,
    seed: int,
    callbacks: list[Any] | None = None,
) -> Any:
    """The stage's ``DPOTrainer``: the policy loaded from ``model_spec`` and the stage's settings.

    The one place the DPO configuration is built (the stage and ``moalign bench`` both use it). A
    reference copy is loaded only when neither LoRA (adapters disabled) nor precomputed reference
    log-probabilities make it unnecessary.
    """
    from trl import DPOConfig, DPOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training.trl_fence import SharedPromptDPOTrainer

    tokenizer = load_tokenizer(model_spec, padding_side="right")
    require_prompts_fit(list(train["prompt"]), tokenizer, config.max_length, config.dataset)
    ref_model = None if config.peft or config.precompute_ref_log_probs else load_causal_lm(model_spec)
    args = DPOConfig(
        **trainer_kwargs(config, output_dir, seed=seed, has_eval=evaluation is not None),
        include_num_input_tokens_seen="non_padding",  # trained tokens, for the cost table
        beta=config.beta,
        loss_type=config.loss_types,
        loss_weights=config.loss_weights,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        max_length=config.max_length,
    )
    trainer_class = SharedPromptDPOTrainer if config.shared_prompt else DPOTrainer
    return trainer_class(
        model=load_causal_lm(model_spec),
        ref_model=ref_model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=config.peft.to_peft() if config.peft else None,
        callbacks=callbacks,
    )


def check_dpo_data(config: DPOStageConfig, tag_dimensions: TagDimensions) -> None:
    """What :func:`run_dpo` checks of its whole dataset before loading a model (prompt lengths aside: they
    need the tokenizer), without a run."""
    train_eval_datasets(config, None, preference_records, tag_dimensions)


@register_stage(
    "dpo",
    DPOStageConfig,
    consumes=("preferences",),
    budget=partial(trainer_budget, sequences_per_record=2),  # chosen and rejected
    data_check=check_dpo_data,
)
def run_dpo(ctx: StageContext, config: DPOStageConfig) -> StageResult:
    """Train with DPO against the starting checkpoint; hand on the final checkpoint."""
    from moalign.training.callbacks import trainer_callbacks
    from moalign.training.checkpoint import train_and_save

    train, evaluation = train_eval_datasets(config, ctx, preference_records, ctx.recipe.tag_dimensions)
    callbacks = trainer_callbacks(ctx, config, evaluation is not None, derive=lambda logs: dpo_kl(logs, config.beta))
    trainer = dpo_trainer(
        config, ctx.model, train, evaluation, output_dir=ctx.checkpoint_dir, seed=ctx.seed, callbacks=callbacks
    )
    path, summary = train_and_save(
        trainer, trainer.processing_class, ctx.dir / "model", validate=evaluation is not None, pairs=len(train)
    )
    return StageResult(model=path, summary=summary)
