import pytest
import torch

from moalign.models import load_causal_lm
from moalign.training.branch_attention import BRANCH_ATTENTION, branch_attention_for, branch_mask, branch_sdpa
from moalign.training.logprobs import pack_completions, sequence_logps


def test_branch_mask_worked_by_hand():
    # prompt of 2, completion of 3: the completion sees both prompt keys, and itself causally
    assert branch_mask(2, 3)[0, 0].int().tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]


class _Attention(torch.nn.Module):
    num_key_value_groups = 2  # 4 query heads over 2 key/value heads
    is_causal = True


def test_branch_sdpa_equals_sdpa_over_the_packed_mask_values_and_gradients():
    torch.manual_seed(0)
    groups = ([[1, 2, 3], [4, 5]], [[[6, 7], [8, 9, 10], []], [[11], [12, 13]]])
    packed = pack_completions(*groups, pad_id=0)
    length = packed.input_ids.shape[1]
    query = torch.randn(1, 4, length, 8, requires_grad=True)
    key = torch.randn(1, 2, length, 8, requires_grad=True)
    value = torch.randn(1, 2, length, 8, requires_grad=True)
    ours, _ = branch_sdpa(_Attention(), query, key, value, None, branch_layout=packed.layout[0], scaling=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), attn_mask=packed.attention_mask, scale=0.3
    ).transpose(1, 2)
    assert ours.shape == expected.shape == (1, length, 4, 8)
    assert torch.allclose(ours, expected, atol=1e-6)
    weights = torch.randn_like(ours)
    grads_ours = torch.autograd.grad((ours * weights).sum(), (query, key, value))
    grads_expected = torch.autograd.grad((expected * weights).sum(), (query, key, value))
    for g_ours, g_expected in zip(grads_ours, grads_expected, strict=True):
        assert torch.allclose(g_ours, g_expected, atol=1e-5)


def test_branch_sdpa_without_a_layout_is_sdpa_with_the_given_mask():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True
    ours, _ = branch_sdpa(_Attention(), query, key, value, mask)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), attn_mask=mask
    ).transpose(1, 2)
    assert torch.allclose(ours, expected, atol=1e-6)
    with pytest.raises(ValueError, match="one packed row"):
        branch_sdpa(_Attention(), query, key, value, mask, branch_layout=((0, 1, (4,)),))


def test_sdpa_models_attend_branch_by_branch_and_keep_their_implementation(tiny_llama_dir, monkeypatch):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    assert model.config._attn_implementation == "sdpa"
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    packed = pack_completions([[5, 6, 7], [8]], [[[9, 10], [11]], [[12], []]], pad_id=0)
    with torch.no_grad():
        sequence_logps(model, packed)
    layers = model.config.num_hidden_layers
    assert len(calls) == 5 * layers  # per layer: 2 prompts and 3 non-empty completions
    assert model.config._attn_implementation == "sdpa"
    with branch_attention_for(model.config):
        assert model.config._attn_implementation == BRANCH_ATTENTION
    assert model.config._attn_implementation == "sdpa"


def test_checkpointed_models_attend_through_the_mask_and_backpropagate(tiny_llama_dir):
    # checkpointing replays a layer's forward with the model's own attention during backward: the
    # replay must save what the first forward saved, so such models keep the 4-D mask
    model = load_causal_lm(str(tiny_llama_dir))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    packed = pack_completions([[5, 6, 7], [8]], [[[9, 10], [11]], [[12], [13, 14]]], pad_id=0)
    checkpointed = sequence_logps(model, packed)
    checkpointed.sum().backward()  # a CheckpointError if the replay attended differently
    model.gradient_checkpointing_disable()
    assert torch.allclose(checkpointed, sequence_logps(model, packed), atol=1e-5)
