"""The ``perplexity`` scorer: fluency as the negative mean token NLL of the completion under a reference LM.

Score = ``-(1/T) sum_t -log p_ref(y_t | x, y_<t)`` over the completion's tokens plus the end-of-sequence
token (so that ending is scored too, and an empty completion is scored by how likely the model finds
ending at once). ``exp(-score)`` is the completion's perplexity.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.rewards.scorers.base import ModelCache, Scorer, default_device, length_sorted_batches, register_scorer

PromptFormat = Literal["chat", "plain", "none"]


class ReferenceLM:
    """A causal LM and its tokenizer that score completion tokens given a prompt."""

    def __init__(self, spec: str, device: str | None) -> None:
        from moalign.models import load_causal_lm, load_tokenizer

        self.device = device or default_device()
        self.tokenizer = load_tokenizer(spec, padding_side="left")
        self.model = load_causal_lm(spec).eval().to(self.device)
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def prompt_ids(self, prompt: str, fmt: PromptFormat) -> list[int]:
        tok = self.tokenizer
        if fmt == "chat" and getattr(tok, "chat_template", None):
            from moalign.generation import chat_inputs

            ids = tok(chat_inputs(tok, [prompt])[0], add_special_tokens=False)["input_ids"]
        elif fmt in ("chat", "plain"):
            ids = tok(prompt, add_special_tokens=True)["input_ids"]
        else:
            ids = []
        if not ids:  # the first completion token needs a context to be predicted from
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            ids = [start]
        return list(ids)

    def completion_ids(self, completion: str) -> list[int]:
        return [*self.tokenizer(completion, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    @torch.inference_mode()
    def mean_nll(self, prompts: Sequence[list[int]], completions: Sequence[list[int]], batch_size: int) -> list[float]:
        """Mean NLL of each completion's tokens given its prompt (left-padded batches)."""
        out = [0.0] * len(prompts)
        pad = self.tokenizer.pad_token_id
        lengths = ["x" * (len(p) + len(c)) for p, c in zip(prompts, completions, strict=True)]
        for idx in length_sorted_batches(lengths, batch_size):
            seqs = [prompts[i] + completions[i] for i in idx]
            width = max(len(s) for s in seqs)
            n_comp = torch.tensor([len(completions[i]) for i in idx])
            keep = int(n_comp.max())
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
            positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
            kw: dict[str, Any] = {"logits_to_keep": keep + 1} if self._keeps_logits else {}
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                **kw,
            ).logits[:, -(keep + 1) : -1]
            targets = ids[:, -keep:].to(self.device)
            nll = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            ).view(len(idx), keep)
            valid = torch.arange(keep).unsqueeze(0) >= (keep - n_comp).unsqueeze(1)
            means = (nll.cpu() * valid).sum(dim=1) / n_comp
            for j, i in enumerate(idx):
                out[i] = float(means[j])
        return out


class PerplexityConfig(StrictModel):
    model: str = "builtin:smollm2-135m-instruct"
    """The reference causal LM."""
    prompt_format: PromptFormat = "chat"
    """How the completion is conditioned: on the prompt in the chat template (as a chat policy saw it),
    on the raw prompt text, or on nothing."""
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(1024, ge=2)
    """Prompt + completion tokens; the prompt is cut from the left first, then the completion's end."""
    device: str | None = None


@register_scorer("perplexity", PerplexityConfig)
def build_perplexity(config: PerplexityConfig, *, models: ModelCache) -> Scorer:
    """Score = negative mean token NLL of completion + EOS (higher is more fluent); always <= 0."""
    lm = models.get(("causal-lm", config.model, config.device), lambda: ReferenceLM(config.model, config.device))

    def score(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float]:
        prompt_ids, completion_ids = [], []
        for p, c in zip(prompts, completions, strict=True):
            cids = lm.completion_ids(c)[: config.max_length - 1]
            pids = lm.prompt_ids(p, config.prompt_format)[-(config.max_length - len(cids)) :]
            prompt_ids.append(pids)
            completion_ids.append(cids)
        return [-nll for nll in lm.mean_nll(prompt_ids, completion_ids, config.batch_size)]

    return score
