"""Supervised fine-tuning on TRL's SFTTrainer, with seed 004's dynamic length penalty.

Completion-only loss (seed 004 eq. 1): records become prompt/completion chats, and TRL masks the
prompt tokens (chat-template special tokens included) with -100, so only the assistant reply and its
end-of-turn token are trained. The trainer is :class:`moalign.training.trl_fence.LengthPenaltySFTTrainer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from moalign.config.base import StrictModel
from moalign.data.specs import record_chat, require_prompt, require_prompts_fit, train_eval_datasets
from moalign.errors import UserError
from moalign.stages.base import StageContext, StageResult, register_stage
from moalign.training.args import TrainerStageConfig, trainer_budget, trainer_kwargs

if TYPE_CHECKING:
    from moalign.tags import TagDimensions


class LengthPenaltyConfig(StrictModel):
    """Seed 004 eq. 3: ``coef * E[max(0, len(sample) - len(reference))^2]`` added to the SFT loss."""

    coef: float = Field(1e-3, ge=0.0)
    """lambda of eq. 3, per squared token of excess length. It weighs the penalty against the
    likelihood term, whose scale depends on ``loss_normalization``: seed 004 eq. 2 sums each
    response's token losses (``sequence``, the paper's 0.001 is meant against that), while TRL's default
    (``token``) averages over tokens, which makes the likelihood term about one average response
    length smaller and the same lambda that much stronger."""
    every_n_steps: int = Field(1, gt=0)
    num_samples: int = Field(2, gt=0)
    """Completions sampled per prompt; >= 2 gives the leave-one-out baseline."""
    max_new_tokens: int = Field(128, gt=0)
    temperature: float = Field(1.0, gt=0.0)


class SFTStageConfig(TrainerStageConfig):
    learning_rate: float = Field(2e-5, gt=0.0)
    packing: bool = False
    group_by_length: bool = False
    """Batch rows of similar length together (transformers' ``train_sampling_strategy: group_by_length``):
    less padding per step, each row still trained alone (unlike ``packing``)."""
    completion_only_loss: bool = True
    loss_normalization: Literal["token", "sequence"] = "token"
    """``token``: TRL's mean over every trained token of the batch; ``sequence``: seed 004 eq. 2, each
    response's token losses summed, averaged over responses
    (:func:`moalign.training.trl_fence.sequence_loss_scale`)."""
    length_penalty: LengthPenaltyConfig | None = None


def sft_records(dataset: Any, source: str) -> Any:
    """Normalise records to TRL's conversational prompt/completion format.

    Accepts ``messages`` (the last one must be the assistant's), or ``prompt`` with one of
    ``completion``/``response``/``chosen`` (strings or chats).
    """
    cols = set(dataset.column_names)
    answer = next((c for c in ("completion", "response", "chosen") if c in cols), None)
    if "messages" not in cols and ("prompt" not in cols or answer is None):
        raise UserError(
            f"SFT needs 'messages' or 'prompt' + one of completion/response/chosen; found {sorted(cols)}",
            source=source,
        )

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        if "messages" in cols and (row.get("messages") or "prompt" not in cols or answer is None):
            messages = record_chat(row, "messages", "user", index, source)
            if not messages or messages[-1]["role"] != "assistant":
                raise UserError(f"record {index}: the last message must be the assistant's", source=source)
            require_prompt(messages[:-1], index, source)
            return {"prompt": messages[:-1], "completion": messages[-1:]}
        require_prompt(row["prompt"], index, source)
        prompt = record_chat(row, "prompt", "user", index, source)
        return {"prompt": prompt, "completion": record_chat(row, answer, "assistant", index, source)}

    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)


def check_sft_data(config: SFTStageConfig, tag_dimensions: TagDimensions) -> None:
    """What :func:`run_sft` checks of its whole dataset before loading a model (prompt lengths aside: they
    need the tokenizer), without a run."""
    train_eval_datasets(config, None, sft_records, tag_dimensions)


@register_stage("sft", SFTStageConfig, consumes=("sft",), budget=trainer_budget, data_check=check_sft_data)
def run_sft(ctx: StageContext, config: SFTStageConfig) -> StageResult:
    """Train with completion-only SFT (+ optional length penalty); hand on the final checkpoint."""
    from trl import SFTConfig

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training.callbacks import trainer_callbacks
    from moalign.training.checkpoint import train_and_save
    from moalign.training.trl_fence import LengthPenaltySFTTrainer

    train, evaluation = train_eval_datasets(config, ctx, sft_records, ctx.recipe.tag_dimensions)
    tokenizer = load_tokenizer(ctx.model, padding_side="right")
    require_prompts_fit(list(train["prompt"]), tokenizer, config.max_length, config.dataset)
    model = load_causal_lm(ctx.model)
    args = SFTConfig(
        **trainer_kwargs(config, ctx.checkpoint_dir, seed=ctx.seed, has_eval=evaluation is not None),
        include_num_input_tokens_seen="non_padding",  # trained tokens, for the cost table
        max_length=config.max_length,
        packing=config.packing,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        completion_only_loss=config.completion_only_loss,
    )
    trainer = LengthPenaltySFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=config.peft.to_peft() if config.peft else None,
        callbacks=trainer_callbacks(ctx, config, evaluation is not None),
        length_penalty=config.length_penalty,
        loss_normalization=config.loss_normalization,
    )
    path, summary = train_and_save(
        trainer, tokenizer, ctx.dir / "model", validate=evaluation is not None, samples=len(train)
    )
    return StageResult(model=path, summary=summary)
