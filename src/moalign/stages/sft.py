"""Supervised fine-tuning on TRL's SFTTrainer, with seed 004's dynamic length penalty.

Completion-only loss (seed 004 eq. 1): records become prompt/completion chats, and TRL masks the
prompt tokens (chat-template special tokens included) with -100, so only the assistant reply and its
end-of-turn token are trained.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.data.specs import record_chat, require_prompt, require_prompts_fit, train_eval_datasets
from moalign.errors import UserError
from moalign.generation import generate_shared_prefix
from moalign.losses.length_penalty import length_penalty, length_penalty_surrogate
from moalign.stages.base import StageContext, StageResult, register_stage
from moalign.training.args import TrainerStageConfig, trainer_kwargs
from moalign.training.logprobs import prompt_completion_logps


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
    completion_only_loss: bool = True
    loss_normalization: Literal["token", "sequence"] = "token"
    """``token``: TRL's mean over every trained token of the batch; ``sequence``: seed 004 eq. 2, each
    response's token losses summed, averaged over responses (:func:`sequence_loss_scale`)."""
    length_penalty: LengthPenaltyConfig | None = None


def sequence_loss_scale(trained_tokens: float, sequences: int) -> float:
    """The factor turning a token-mean loss into seed 004 eq. 2's ``E_(x,y)[sum_t -log p(y_t | x, y_<t)]``.

    A mean over ``trained_tokens`` tokens of ``sequences`` responses times ``trained_tokens / sequences``
    is the sum of each response's token losses averaged over the responses.
    """
    return trained_tokens / sequences


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


def _make_trainer_class() -> type:
    from trl import SFTTrainer

    class LengthPenaltySFTTrainer(SFTTrainer):
        """SFTTrainer plus the seed 004 length penalty, estimated on fresh samples every N steps."""

        def __init__(
            self,
            *args: Any,
            length_penalty: LengthPenaltyConfig | None = None,
            loss_normalization: str = "token",
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.length_penalty_config = length_penalty
            self.loss_normalization = loss_normalization

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.loss_normalization == "sequence":
                scale = self._sequence_scale(inputs, num_items_in_batch)
                result = (result[0] * scale, result[1]) if return_outputs else result * scale
            cfg = self.length_penalty_config
            if cfg is None or not model.training or self.state.global_step % cfg.every_n_steps:
                return result
            term = self._length_penalty_term(model, inputs, cfg)
            if return_outputs:
                return result[0] + term, result[1]
            return result + term

        def _sequence_scale(self, inputs: dict[str, torch.Tensor], num_items_in_batch: Any) -> float:
            """:func:`sequence_loss_scale` for the loss transformers divides by ``num_items_in_batch`` (the
            trained tokens of every micro-batch of the step, on every process when it averages over them);
            without it, for this micro-batch's own token mean."""
            rows = inputs["input_ids"].shape[0]
            if num_items_in_batch is None:
                return sequence_loss_scale(float((inputs["labels"][:, 1:] != -100).sum()), rows)
            processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
            sequences = rows * self.args.gradient_accumulation_steps * processes
            return sequence_loss_scale(float(num_items_in_batch), sequences)

        def _length_penalty_term(self, model: Any, inputs: dict[str, torch.Tensor], cfg: LengthPenaltyConfig):
            labels, attn, ids = inputs["labels"], inputs["attention_mask"], inputs["input_ids"]
            prompts, ref_lengths = [], []
            for row in range(ids.shape[0]):
                answer = (labels[row] != -100).nonzero()
                start = int(answer[0]) if len(answer) else int(attn[row].sum())
                prompts.append(ids[row, :start].tolist())
                ref_lengths.append(len(answer))
            samples = self._sample(model, prompts, cfg)  # [B*k] token lists, EOS included
            k = cfg.num_samples
            lengths = torch.tensor([len(s) for s in samples], dtype=torch.float32).view(-1, k)
            penalties = length_penalty(lengths, torch.tensor(ref_lengths), cfg.coef)
            rows_prompts = [p for p in prompts for _ in range(k)]
            logps = prompt_completion_logps(model, rows_prompts, samples, self.processing_class.pad_token_id)
            mode = "train"
            self._metrics[mode]["length_penalty/value"].append(penalties.mean().item())
            self._metrics[mode]["length_penalty/sampled_length"].append(lengths.mean().item())
            self._metrics[mode]["length_penalty/reference_length"].append(float(sum(ref_lengths) / len(ref_lengths)))
            return length_penalty_surrogate(penalties.to(logps.device), logps.view(-1, k))

        @torch.no_grad()
        def _sample(self, model: Any, prompts: list[list[int]], cfg: LengthPenaltyConfig) -> list[list[int]]:
            unwrapped = self.accelerator.unwrap_model(model)
            tok = self.processing_class
            width = max(len(p) for p in prompts)
            pad = tok.pad_token_id
            rows = [p for p in prompts for _ in range(cfg.num_samples)]  # a prompt's samples share its prefill
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in rows], device=model.device)
            attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows], device=model.device)
            out = generate_shared_prefix(
                unwrapped,
                ids,
                attn,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=cfg.max_new_tokens,
                pad_token_id=pad,
            )[:, width:]
            eos = {tok.eos_token_id, *_as_list(unwrapped.generation_config.eos_token_id)}
            samples = []
            for row in out.tolist():
                end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
                samples.append(row[:end])
            return samples

    return LengthPenaltySFTTrainer


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@register_stage("sft", SFTStageConfig)
def run_sft(ctx: StageContext, config: SFTStageConfig) -> StageResult:
    """Train with completion-only SFT (+ optional length penalty); hand on the final checkpoint."""
    from trl import SFTConfig

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training.callbacks import trainer_callbacks
    from moalign.training.checkpoint import train_and_save

    train, evaluation = train_eval_datasets(config, ctx, sft_records, ctx.recipe.tag_dimensions)
    tokenizer = load_tokenizer(ctx.model, padding_side="right")
    require_prompts_fit(list(train["prompt"]), tokenizer, config.max_length, config.dataset)
    model = load_causal_lm(ctx.model)
    args = SFTConfig(
        **trainer_kwargs(config, ctx.checkpoint_dir, seed=ctx.seed, has_eval=evaluation is not None),
        include_num_input_tokens_seen="non_padding",  # trained tokens, for the cost table
        max_length=config.max_length,
        packing=config.packing,
        completion_only_loss=config.completion_only_loss,
    )
    trainer = _make_trainer_class()(
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
