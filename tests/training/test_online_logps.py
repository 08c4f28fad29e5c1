import pytest
import torch

from moalign.models import load_causal_lm
from moalign.training.logprobs import token_logps
from moalign.training.online import sample_token_logps


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_sample_token_logps_equal_the_padded_rows_values_and_gradients(tiny_llama_dir, attention, scored_rollout):
    model = load_causal_lm(str(tiny_llama_dir))
    model.set_attn_implementation(attention)
    # 2 samples of each of 2 prompts, one of them empty; packed, each prompt is computed once
    samples = scored_rollout([[5, 6, 7], [5, 6, 7], [8, 9], [8, 9]], [[10, 11], [12], [13, 14, 15], []], 2)
    for part in (samples, samples.rows([3, 0, 2])):  # a minibatch keeps the full width
        ours = sample_token_logps(model, part)
        logits = model(input_ids=part.input_ids, attention_mask=part.attention_mask).logits[:, :-1]
        expected = token_logps(logits, part.input_ids[:, 1:]) * part.token_mask.float()
        assert ours.shape == expected.shape == (len(part.completion_ids), samples.input_ids.shape[1] - 1)
        assert torch.allclose(ours, expected, atol=1e-5)
        assert (ours[part.token_mask == 0] == 0).all()
        params = [p for p in model.parameters() if p.requires_grad]
        weights = torch.rand_like(ours)
        for g_ours, g_expected in zip(
            torch.autograd.grad((ours * weights).sum(), params),
            torch.autograd.grad((expected * weights).sum(), params),
            strict=True,
        ):
            assert (g_ours - g_expected).abs().max() <= 1e-4 * (1 + g_expected.abs().max())
