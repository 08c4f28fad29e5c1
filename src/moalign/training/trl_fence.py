"""Every subclass of a TRL trainer, so every override of TRL's internals, lives here (written for TRL 1.16).

TRL's private methods change between minor releases without notice. Keeping the overrides in one module lets
``tests/training/test_trl_fence.py`` check each one, and each TRL attribute and helper they use, against the
installed TRL; ``pyproject.toml`` pins TRL to the minor series that test passes on. The stages import these
classes when they build a trainer (importing TRL takes seconds).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol
from unittest import mock

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer, GRPOTrainer, RLOOTrainer, SFTTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad, use_adapter

from moalign import generation
from moalign.losses.advantages import leave_one_out_advantages
from moalign.losses.length_penalty import length_penalty, length_penalty_surrogate
from moalign.losses.ppo import token_entropy
from moalign.losses.preference import chosen_nll, dpo_loss
from moalign.training.logprobs import (
    PackedCompletions,
    pack_by_prompt,
    pack_completions,
    packed_logits,
    prompt_completion_logps,
    scatter_packed,
    sequence_logps,
    takes_packed_rows,
    token_logps,
    unpack_completion_rows,
    unpack_preference_batch,
)

# --- DPO -------------------------------------------------------------------------------------------------------


@contextmanager
def timed_reference_precompute(trainer_cls: type, record: dict[str, float]) -> Iterator[None]:
    """Inside: ``trainer_cls._precompute_ref_logps`` (a TRL internal run in the DPO trainer's constructor) adds
    its run time to ``record["precompute_s"]`` (the DPO benchmark charges it to the side that precomputes)."""
    original = trainer_cls._precompute_ref_logps

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            record["precompute_s"] = record.get("precompute_s", 0.0) + time.perf_counter() - start

    with mock.patch.object(trainer_cls, "_precompute_ref_logps", timed):
        yield


class SharedPromptDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose sigmoid loss (alone, or with TRL's ``sft`` term: RPO) scores each pair from one
    packed segment: policy and reference log-probabilities from
    :func:`~moalign.training.logprobs.sequence_logps`; everything else is TRL's.

    Logged metrics: TRL's rewards/*, logps/* and num_tokens (not entropy, logits/* or token accuracy,
    which would need the full-vocabulary logits of every position). ``packed_tokens`` counts the
    token positions the packed rows hold (prompt once per pair, padding excluded).
    """

    packed_tokens = 0

    def _packs(self, model: Any) -> bool:
        return (
            self.loss_types in (["sigmoid"], ["sigmoid", "sft"])
            and self.ld_alpha is None
            and self.f_divergence_type == "reverse_kl"
            and not self.use_weighting
            and not self.aux_loss_enabled
            and takes_packed_rows(model)
        )

    def _pack(self, inputs: dict[str, Any]) -> PackedCompletions:
        prompts, chosen, rejected = unpack_preference_batch(inputs)
        pairs = [[c, r] for c, r in zip(chosen, rejected, strict=True)]
        return pack_completions(prompts, pairs, pad_id=0).to(inputs["input_ids"].device)

    def _logps(self, model: Any, packed: PackedCompletions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chosen, rejected)`` summed log-probabilities, ``[B]`` each."""
        logps = sequence_logps(model, packed)
        return logps[0::2], logps[1::2]

    def _reference_logps(self, model: Any, packed: PackedCompletions) -> tuple[torch.Tensor, torch.Tensor]:
        adapter: Any = nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter,
            self.accelerator.autocast(),
        ):
            return self._logps(model, packed)

    def compute_ref_log_probs(self, model, inputs):  # type: ignore[no-untyped-def]
        if not self._packs(model):
            return super().compute_ref_log_probs(model, inputs)
        return self._reference_logps(model, self._pack(inputs))

    def _compute_loss(self, model, inputs, return_outputs):  # type: ignore[no-untyped-def]
        if return_outputs or not self._packs(model):
            return super()._compute_loss(model, inputs, return_outputs)
        packed = self._pack(inputs)
        if self.model.training:
            attention, completion = inputs["attention_mask"], inputs["completion_mask"]
            chosen_prompts = (attention - completion)[: attention.shape[0] // 2]
            self.packed_tokens += int(attention.sum() - chosen_prompts.sum())
        chosen, rejected = self._logps(model, packed)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.model if self.ref_model is None else self.ref_model
            ref_chosen, ref_rejected = self._reference_logps(reference, packed)
        losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        self._log_pair_metrics(inputs, chosen, rejected, chosen_rewards, rejected_rewards)
        loss = losses.mean() * self.loss_weights[0]
        if self.loss_types[1:] == ["sft"]:  # RPO: the chosen responses' NLL beside the DPO loss
            lengths = torch.bincount(packed.sequences, minlength=packed.num_sequences)[0::2]
            loss = loss + chosen_nll(chosen, lengths) * self.loss_weights[1]
        return loss

    def _log_pair_metrics(self, inputs: dict[str, Any], *values: torch.Tensor) -> None:
        """TRL's DPO metrics that need no logits, gathered across processes as TRL gathers them."""
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        chosen, rejected, chosen_rewards, rejected_rewards = (self.accelerator.gather(v.detach()) for v in values)
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(chosen.mean().item())
        metrics["logps/rejected"].append(rejected.mean().item())


# --- GRPO and RLOO ---------------------------------------------------------------------------------------------


def group_temperatures(temperatures: Sequence[float], k: int) -> list[float]:
    """The sampling temperature of each of a group's ``k`` completions: the list's values in order, each
    for an equal share of the group (``[0.7, 1.0, 1.3]`` over 4 completions: 0.7, 0.7, 1.0, 1.3)."""
    m = len(temperatures)
    return [temperatures[j * m // k] for j in range(k)]


class SharedPromptMixin:
    """For TRL's GRPO and RLOO trainers: a prompt's k completions share its prefill when sampled
    (:func:`moalign.generation.generate_shared_prefix`) and one packed segment when scored
    (:func:`moalign.training.logprobs.pack_completions`), the prompt computed once.

    Rows are read from TRL's ``[prompt | completion]`` layout and grouped by identical prompt within
    TRL's row chunks (``batch_size``, as TRL chunks them for memory). Values equal TRL's own forward
    within float32 rounding (checked by a test, and within bf16 rounding under bf16 autocast). Sampling
    runs in the stage's precision (bf16 autocast when the stage trains in it), where TRL samples in the
    weights' dtype. vLLM, continuous batching, multimodal inputs, MoE
    auxiliary losses, ``cast_lm_head_to_fp32`` and attentions without custom masks take TRL's path.
    """

    single_turn_logprobs: bool
    """Whether the trainer's ``_generate_single_turn`` returns ``(completion_ids, logprobs)`` (GRPO) or
    the ids alone (RLOO)."""
    sampling_temperatures: list[float] | None = None
    """The stage's list of temperatures (:func:`group_temperatures`); None: TRL's one ``temperature``."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.use_vllm or self.use_transformers_continuous_batching or images is not None or multimodal_fields:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, *args, **kwargs)  # type: ignore[misc]
        rows = [torch.tensor(ids) for ids in prompt_ids]
        padding = {"padding_side": "left", "pad_to_multiple_of": self.pad_to_multiple_of}
        device = self.accelerator.device
        inputs = {
            "input_ids": pad(rows, padding_value=self._tokenizer.pad_token_id, **padding).to(device),
            "attention_mask": pad([torch.ones_like(t) for t in rows], padding_value=0, **padding).to(device),
        }
        temperatures = [None] * len(rows)
        if self.sampling_temperatures:  # a prompt's completions are consecutive rows (TRL)
            per_row = group_temperatures(self.sampling_temperatures, self.num_generations)
            first = self.accelerator.process_index * len(rows)
            temperatures = [per_row[(first + r) % self.num_generations] for r in range(len(rows))]
        completions: list[list[int]] = [[] for _ in rows]
        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
            self.accelerator.autocast(),  # the stage's precision (TRL samples in the weights' dtype)
        ):
            for temperature in dict.fromkeys(temperatures):
                where = [r for r, t in enumerate(temperatures) if t == temperature]
                config = self.generation_config
                if temperature is not None:
                    config = copy.deepcopy(config)
                    config.temperature = temperature
                part = {key: value[where] for key, value in inputs.items()}
                sequences = generation.generate_shared_prefix(unwrapped_model, **part, generation_config=config)
                for r, row in zip(where, sequences[:, part["input_ids"].shape[1] :].tolist(), strict=True):
                    completions[r] = row
        eos = set(self.eos_token_ids)
        ends = [next((j + 1 for j, t in enumerate(c) if t in eos), len(c)) for c in completions]
        completion_ids = [c[:n] for c, n in zip(completions, ends, strict=True)]
        return (completion_ids, None) if self.single_turn_logprobs else completion_ids

    def _get_per_token_logps_and_entropies(  # type: ignore[no-untyped-def]
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        if (
            compute_aux_loss
            or any(value is not None for value in multimodal.values())
            or getattr(self.args, "cast_lm_head_to_fp32", False)
            or not takes_packed_rows(model)
        ):
            return super()._get_per_token_logps_and_entropies(  # type: ignore[misc]
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **multimodal,
            )
        size = batch_size or input_ids.shape[0]
        chunks = [
            self._packed_chunk(
                model, input_ids[i : i + size], attention_mask[i : i + size], logits_to_keep, compute_entropy
            )
            for i in range(0, input_ids.shape[0], size)
        ]
        entropies = torch.cat([c[1] for c in chunks]) if compute_entropy else None
        return torch.cat([c[0] for c in chunks]), entropies, None

    def _packed_chunk(
        self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int, entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probabilities and entropies ``[rows, width]`` of a chunk's completions, packed by
        prompt. Entropies carry a gradient only when an entropy bonus (GRPO's) uses them."""
        prompts, completions, columns = unpack_completion_rows(input_ids, attention_mask, width)
        device = input_ids.device
        packed, order = pack_by_prompt(prompts, completions, pad_id=0)
        packed, order = packed.to(device), order.to(device)
        with self.accelerator.autocast():
            logits, predicting = packed_logits(model, packed)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        logps = scatter_packed(token_logps(logits, packed.targets, rows=predicting), packed, order, columns, width)
        if not entropy:
            return logps, None
        bonus = getattr(self, "_entropy_bonus_enabled", False)
        entropies = token_entropy(logits if bonus else logits.detach())[predicting]
        return logps, scatter_packed(entropies, packed, order, columns, width)


class SharedPromptGRPOTrainer(SharedPromptMixin, GRPOTrainer):
    """``GRPOTrainer`` with packed per-token log-probabilities and shared prefills."""

    single_turn_logprobs = True  # GRPO's _generate_single_turn returns (completion_ids, logprobs)


class SharedPromptRLOOTrainer(SharedPromptMixin, RLOOTrainer):
    """``RLOOTrainer`` with packed per-token log-probabilities and shared prefills."""

    single_turn_logprobs = False  # RLOO's _generate_single_turn returns completion_ids only


def leave_one_out_rewards_advantages(rewards_per_func: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """Per-completion advantages ``[N]`` from TRL's gathered ``[N, n_funcs]`` rewards (groups of k rows).

    The weighted sum of the reward functions (NaN where every function returned None), then
    ``R_i - mean_{j != i} R_j`` over the scored peers; unscored completions and completions with no
    scored peer get 0 (no learning signal), as TRL does for its own advantages.
    """
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * weights.to(rewards_per_func).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    return torch.nan_to_num(leave_one_out_advantages(rewards.view(-1, k)).view(-1), nan=0.0)


class LeaveOneOutMixin:
    """For TRL's GRPO trainers: advantages replaced by seed 004's leave-one-out ones
    (:func:`leave_one_out_rewards_advantages` of the rewards TRL gathered)."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        self._gathered_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # type: ignore[misc]
        return self._gathered_rewards

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        output = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        k = self.num_generations if self.model.training else self.num_generations_eval
        advantages = leave_one_out_rewards_advantages(self._gathered_rewards, self.reward_weights, k)
        n = output["advantages"].shape[0]
        start = self.accelerator.process_index * n
        output["advantages"] = advantages[start : start + n].to(output["advantages"])
        return output


class LeaveOneOutGRPOTrainer(LeaveOneOutMixin, GRPOTrainer):
    """``GRPOTrainer`` with leave-one-out advantages."""


class SharedPromptLeaveOneOutGRPOTrainer(LeaveOneOutMixin, SharedPromptGRPOTrainer):
    """``GRPOTrainer`` with leave-one-out advantages, packed per-token log-probabilities and shared prefills."""


# --- SFT -------------------------------------------------------------------------------------------------------


class LengthPenaltySettings(Protocol):
    """What the trainer reads of :class:`moalign.stages.sft.LengthPenaltyConfig`."""

    coef: float
    every_n_steps: int
    num_samples: int
    max_new_tokens: int
    temperature: float


def sequence_loss_scale(trained_tokens: float, sequences: int) -> float:
    """The factor turning a token-mean loss into seed 004 eq. 2's ``E_(x,y)[sum_t -log p(y_t | x, y_<t)]``.

    A mean over ``trained_tokens`` tokens of ``sequences`` responses times ``trained_tokens / sequences``
    is the sum of each response's token losses averaged over the responses.
    """
    return trained_tokens / sequences


class LengthPenaltySFTTrainer(SFTTrainer):
    """SFTTrainer plus the seed 004 length penalty, estimated on fresh samples every N steps."""

    def __init__(
        self,
        *args: Any,
        length_penalty: LengthPenaltySettings | None = None,
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

    def _length_penalty_term(self, model: Any, inputs: dict[str, torch.Tensor], cfg: LengthPenaltySettings):
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
    def _sample(self, model: Any, prompts: list[list[int]], cfg: LengthPenaltySettings) -> list[list[int]]:
        unwrapped = self.accelerator.unwrap_model(model)
        tok = self.processing_class
        width = max(len(p) for p in prompts)
        pad_id = tok.pad_token_id
        rows = [p for p in prompts for _ in range(cfg.num_samples)]  # a prompt's samples share its prefill
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in rows], device=model.device)
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows], device=model.device)
        out = generation.generate_shared_prefix(
            unwrapped,
            ids,
            attn,
            do_sample=True,
            temperature=cfg.temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=pad_id,
        )[:, width:]
        eos = {tok.eos_token_id, *_as_list(unwrapped.generation_config.eos_token_id)}
        samples = []
        for row in out.tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            samples.append(row[:end])
        return samples


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
