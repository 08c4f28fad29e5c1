"""The chunked log-softmax and the completion-only LM head equal the plain full-logits computation."""

import pytest
import torch

from moalign.models import load_causal_lm
from moalign.training.logprobs import completion_logps, join_prompt_completion, token_logps


def reference_token_logps(logits, targets):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def test_token_logps_in_chunks_equal_log_softmax_values_and_gradients():
    torch.manual_seed(0)
    logits = (5 * torch.randn(2, 5, 50)).requires_grad_()
    targets = torch.randint(0, 50, (2, 5))
    ours = token_logps(logits, targets, chunk=3)  # 10 rows in chunks of 3, 3, 3, 1
    expected = reference_token_logps(logits, targets)
    assert torch.allclose(ours, expected, atol=1e-6)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    (grad_expected,) = torch.autograd.grad(expected.sum(), logits)
    assert torch.allclose(grad_ours, grad_expected, atol=1e-6)


def test_token_logps_of_one_hot_logits_worked_by_hand():
    # logits [0, ln 3] over two tokens: p = [1/4, 3/4]
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)).item()]])
    out = token_logps(logits, torch.tensor([1]))
    assert out.item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)


def full_logits_completion_logps(model, ids, attn, comp):
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    return (reference_token_logps(logits, ids[:, 1:]) * comp[:, 1:]).sum(-1)


@pytest.mark.parametrize("lora", [False, True])
def test_completion_logps_through_the_scored_rows_only_equal_full_logits(tiny_llama_dir, lora):
    model = load_causal_lm(str(tiny_llama_dir))
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.eval()
    ids, attn, comp = join_prompt_completion([[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 14]], pad_id=0)
    ours = completion_logps(model, ids, attn, comp)
    expected = full_logits_completion_logps(model, ids, attn, comp)
    assert torch.allclose(ours, expected, atol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    grads_ours = torch.autograd.grad(ours.sum(), params)
    grads_expected = torch.autograd.grad(expected.sum(), params)
    for g_ours, g_expected in zip(grads_ours, grads_expected, strict=True):
        assert torch.allclose(g_ours, g_expected, atol=1e-5)
