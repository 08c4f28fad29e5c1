"""The chunked log-softmax and the completion-only LM head equal the plain full-logits computation."""

import pytest
import torch

from moalign.generation import group_by_prompt
from moalign.models import load_causal_lm
from moalign.training.logprobs import (
    completion_logps,
    join_prompt_completion,
    pack_by_prompt,
    pack_completions,
    packed_logits,
    prompt_completion_logps,
    scatter_packed,
    sequence_logps,
    token_logps,
    unpack_completion_rows,
    unpack_preference_batch,
)


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


def test_token_logps_of_shared_rows_equal_the_rows_repeated_values_and_gradients():
    torch.manual_seed(0)
    logits = (5 * torch.randn(4, 50)).requires_grad_()
    rows = torch.tensor([0, 1, 1, 2, 3, 3, 3])  # rows 1 and 3 predict several targets
    targets = torch.randint(0, 50, (7,))
    ours = token_logps(logits, targets, chunk=3, rows=rows)
    expected = reference_token_logps(logits[rows], targets)
    assert torch.allclose(ours, expected, atol=1e-6)
    weights = torch.arange(1.0, 8.0)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), logits)
    assert torch.allclose(grad_ours, grad_expected, atol=1e-5)


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


def test_pack_completions_rows_positions_and_mask_worked_by_hand():
    # group 0: prompt [1, 2] with completions [3] and [4, 5]; group 1: prompt [6] with [7, 8] and []
    groups = ([[1, 2], [6]], [[[3], [4, 5]], [[7, 8], []]])
    packed = pack_completions(*groups, pad_id=0)  # both groups fit one row
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 2, 3, 0, 1, 2]]
    assert packed.attention_mask[0, 0].int().tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0, 0, 0],  # the second completion sees the prompt, not the first completion
        [1, 1, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0, 0],  # the second group sees nothing of the first
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1, 1, 1],
    ]
    # 3 <- position 1; 4 <- 1 (the prompt's end), 5 <- 3; 7 <- 5, 8 <- 6
    assert packed.rows.tolist() == [0, 0, 0, 0, 0]
    assert packed.predictors.tolist() == [1, 1, 3, 5, 6]
    assert packed.targets.tolist() == [3, 4, 5, 7, 8]
    assert packed.sequences.tolist() == [0, 1, 1, 2, 2]  # completions numbered group by group
    assert packed.offsets.tolist() == [0, 0, 1, 0, 1]
    assert packed.num_sequences == 4
    assert packed.layout == (((0, 2, (1, 2)), (5, 1, (2, 0))),)  # (start, prompt length, completion lengths)

    packed = pack_completions(*groups, pad_id=0, row_tokens=0)  # one group per row
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 0, 0]]
    assert packed.attention_mask[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],  # padding sees itself only
        [0, 0, 0, 0, 1],
    ]
    assert packed.rows.tolist() == [0, 0, 0, 1, 1]
    assert packed.predictors.tolist() == [1, 1, 3, 0, 1]
    assert packed.layout == (((0, 2, (1, 2)),), ((0, 1, (2, 0)),))
    with pytest.raises(ValueError, match="at least one token"):
        pack_completions([[]], [[[1]]], pad_id=0)


def test_unpack_preference_batch_reads_trl_rows():
    # TRL's DataCollatorForPreference example: chosen rows, then rejected rows, right-padded
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4, 5], [7, 8, 9, 0, 0], [1, 2, 3, 6, 0], [7, 8, 10, 11, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]),
        "completion_mask": torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 1, 0]]),
    }
    assert unpack_preference_batch(batch) == ([[1, 2, 3], [7, 8]], [[4, 5], [9]], [[6], [10, 11]])
    batch["input_ids"][2, 0] = 99
    with pytest.raises(ValueError, match="different prompt tokens"):
        unpack_preference_batch(batch)


@pytest.mark.parametrize(("attention", "row_tokens"), [("sdpa", 2048), ("sdpa", 12), ("eager", 2048)])
def test_sequence_logps_equal_separate_rows_values_and_gradients(tiny_llama_dir, attention, row_tokens):
    from peft import LoraConfig, get_peft_model

    model = load_causal_lm(str(tiny_llama_dir))
    model.set_attn_implementation(attention)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).eval()
    prompts = [[5, 6, 7], [8], [9, 10]]
    groups = [[[9, 10], [15]], [[11, 12, 13, 14], [16, 17], [3]], [[], [18, 19]]]  # 2, 3 and 2 completions
    packed = pack_completions(prompts, groups, pad_id=0, row_tokens=row_tokens)  # 12: rows [0], [1, 2]
    ours = sequence_logps(model, packed)
    rows = [(p, c) for p, group in zip(prompts, groups, strict=True) for c in group]
    ids, attn, comp = join_prompt_completion([p for p, _ in rows], [c for _, c in rows], pad_id=0)
    expected = full_logits_completion_logps(model, ids, attn, comp)
    assert ours[5].item() == 0.0  # an empty completion scores nothing
    assert torch.allclose(ours, expected, atol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    weights = torch.arange(1.0, 8.0)  # a weighted sum: each sequence's gradient must be its own
    grads_ours = torch.autograd.grad((ours * weights).sum(), params)
    grads_expected = torch.autograd.grad((expected * weights).sum(), params)
    for g_ours, g_expected in zip(grads_ours, grads_expected, strict=True):
        assert (g_ours - g_expected).abs().max() <= 1e-4 * (1 + g_expected.abs().max())  # float32 rounding


def test_packed_logits_are_the_full_forward_logits_at_each_predictor(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    packed = pack_completions([[5, 6, 7]], [[[9, 10], [11]]], pad_id=0)
    with torch.no_grad():
        logits, rows = packed_logits(model, packed)
        alone = model(input_ids=torch.tensor([[5, 6, 7, 9, 10]])).logits[0]
    assert rows.tolist() == [0, 1, 0]  # 9 and 11 <- the prompt's end (one row of logits), 10 <- position 3
    assert torch.allclose(logits, alone[2:4], atol=1e-5)


def test_unpack_completion_rows_and_group_by_prompt():
    # TRL's online layout: left-padded prompt part (3 columns) | right-padded completion part (3 columns)
    input_ids = torch.tensor([[0, 5, 6, 9, 10, 0], [0, 5, 6, 11, 0, 0], [7, 8, 9, 12, 13, 14]])
    attention_mask = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    prompts, completions, columns = unpack_completion_rows(input_ids, attention_mask, 3)
    assert prompts == [[5, 6], [5, 6], [7, 8, 9]]
    assert completions == [[9, 10], [11], [12, 13, 14]]
    assert columns == [[0, 1], [0], [0, 1, 2]]
    assert group_by_prompt(prompts + [[5, 6]]) == [[0, 1, 3], [2]]


@pytest.mark.parametrize("attention", ["sdpa", "flex_attention"])
def test_prompt_completion_logps_pack_repeated_prompts_in_row_order(tiny_llama_dir, attention):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    if attention != "sdpa":  # an attention without custom 4-D masks: one padded row per completion
        model.config._attn_implementation = attention
    prompts = [[5, 6, 7], [8], [5, 6, 7], [8], [9]]  # repeated prompts, not adjacent
    completions = [[9, 10], [11, 12, 13], [14], [15, 16], [17]]
    with torch.no_grad():
        if attention == "sdpa":
            ours = prompt_completion_logps(model, prompts, completions, pad_id=0)
        else:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("moalign.training.logprobs.pack_completions", None)  # must not be reached
                ours = prompt_completion_logps(model, prompts, completions, pad_id=0)
            model.config._attn_implementation = "sdpa"
        expected = full_logits_completion_logps(model, *join_prompt_completion(prompts, completions, pad_id=0))
    assert torch.allclose(ours, expected, atol=1e-5)


def test_scatter_packed_puts_each_token_value_at_its_row_and_column_worked_by_hand():
    # rows 0 and 2 share a prompt, so they pack as one group: packed completions are rows 0, 2, 1 in that order
    prompts, completions = [[5, 6], [3], [5, 6]], [[7, 8], [4, 4, 4], [9]]
    packed, order = pack_by_prompt(prompts, completions, pad_id=0)
    assert order.tolist() == [0, 2, 1]
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # row 0's two tokens, row 2's one, row 1's three
    completion_columns = [[0, 1], [0, 1, 2], [0]]  # [prompt | completion] rows: the completion's columns
    assert scatter_packed(values, packed, order, completion_columns, 3).tolist() == [
        [1.0, 2.0, 0.0],
        [4.0, 5.0, 6.0],
        [3.0, 0.0, 0.0],
    ]
    predicting_columns = [[1, 2], [0, 1, 2], [1]]  # predicted-token rows: prompt length - 1 + offset
    assert scatter_packed(values, packed, order, predicting_columns, 3).tolist() == [
        [0.0, 1.0, 2.0],
        [4.0, 5.0, 6.0],
        [0.0, 3.0, 0.0],
    ]
    gaps = [[0, 3], [1, 2, 4], [2]]  # any layout: columns need not be contiguous
    assert scatter_packed(values, packed, order, gaps, 5).tolist() == [
        [1.0, 0.0, 0.0, 2.0, 0.0],
        [0.0, 4.0, 5.0, 0.0, 6.0],
        [0.0, 0.0, 3.0, 0.0, 0.0],
    ]
