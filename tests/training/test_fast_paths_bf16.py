"""The fast paths against their plain paths under bf16 autocast, forced, so that every machine runs them
(their float32 cases are in each path's own tests; where oneDNN lacks native bf16 kernels the packed
weights step aside and the plain path runs).

Tolerances: bf16 keeps 8 significant bits, so two orders of summation differ by a few units of 2^-8
relative on each activation; on the tiny model that is up to about 0.05 on a logit or a summed
log-probability of a few tokens (float32: 1e-5).
"""

from __future__ import annotations

import pytest
import torch

from moalign import precision
from moalign.generation import SamplingConfig, chat_inputs, generate, packed_linear_weights
from moalign.models import load_causal_lm, load_tokenizer
from moalign.training.branch_attention import branch_sdpa
from moalign.training.logprobs import join_prompt_completion, pack_completions, sequence_logps, token_logps
from moalign.training.online import sample_token_logps

BF16_ATOL = 5e-2


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("native", [True, False])
def test_packed_weights_under_bf16_equal_plain_autocast_or_step_aside(tiny_llama_dir, monkeypatch, native):
    kernels = native and precision.fast_bf16_on_cpu()  # False: as on a CPU without native bf16 kernels
    monkeypatch.setattr(precision, "fast_bf16_on_cpu", lambda: kernels)
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad(), bf16():
        plain = model(input_ids=ids).logits
        with packed_linear_weights(model, rows=2):
            patched = [m for m in model.modules() if "forward" in vars(m)]
            packed = model(input_ids=ids).logits
    assert bool(patched) == kernels  # packed in bf16 only with native kernels
    assert packed.dtype == plain.dtype == torch.bfloat16
    assert torch.allclose(packed.float(), plain.float(), atol=BF16_ATOL)


def test_generate_in_bf16_equals_plain_generate_under_autocast(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    prompts = ["Hi", "Name a fruit."]
    out = generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens=5), batch_size=2, progress=False, bf16=True)
    for i, text in enumerate(chat_inputs(tokenizer, prompts)):
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode(), bf16():
            alone = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out[i][0].token_ids == alone[0, enc["input_ids"].shape[1] :].tolist()[: len(out[i][0].token_ids)]
    with bf16():  # bf16=False decodes in float32 whatever the caller's autocast
        fp32 = generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens=5), progress=False, bf16=False)
    assert [g[0].num_tokens for g in fp32] == [5, 5]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_sequence_logps_equal_separate_rows_under_bf16(tiny_llama_dir, attention):
    model = load_causal_lm(str(tiny_llama_dir))
    model.set_attn_implementation(attention)
    prompts = [[5, 6, 7], [8]]
    groups = [[[9, 10], [15]], [[11, 12, 13, 14], [16, 17], []]]
    packed = pack_completions(prompts, groups, pad_id=0)
    rows = [(p, c) for p, group in zip(prompts, groups, strict=True) for c in group]
    ids, attn, comp = join_prompt_completion([p for p, _ in rows], [c for _, c in rows], pad_id=0)
    with bf16():
        ours = sequence_logps(model, packed)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        expected = (token_logps(logits, ids[:, 1:]) * comp[:, 1:]).sum(-1)
    assert ours.dtype == torch.float32  # log-probabilities are taken in float32 from bf16 logits
    assert torch.allclose(ours, expected, atol=BF16_ATOL)
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(ours.sum(), params[-2:]))


def test_branch_sdpa_equals_sdpa_over_the_packed_mask_in_bf16():
    class Attention(torch.nn.Module):
        num_key_value_groups = 2
        is_causal = True

    torch.manual_seed(0)
    packed = pack_completions([[1, 2, 3], [4, 5]], [[[6, 7], [8, 9, 10], []], [[11], [12, 13]]], pad_id=0)
    length = packed.input_ids.shape[1]
    query, key, value = (torch.randn(1, h, length, 8).bfloat16() for h in (4, 2, 2))
    ours, _ = branch_sdpa(Attention(), query, key, value, None, branch_layout=packed.layout[0], scaling=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), attn_mask=packed.attention_mask, scale=0.3
    ).transpose(1, 2)
    assert ours.dtype == torch.bfloat16
    assert torch.allclose(ours.float(), expected.float(), atol=2e-2)


def test_sample_token_logps_equal_the_padded_rows_under_bf16(tiny_llama_dir, scored_rollout):
    model = load_causal_lm(str(tiny_llama_dir))
    samples = scored_rollout([[5, 6, 7], [5, 6, 7], [8, 9]], [[10, 11], [12], [13, 14, 15]], 1)
    ids, attn = samples.input_ids, samples.attention_mask
    with bf16():
        ours = sample_token_logps(model, samples)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        expected = token_logps(logits, ids[:, 1:]) * samples.token_mask.float()
    assert torch.allclose(ours, expected, atol=BF16_ATOL)
