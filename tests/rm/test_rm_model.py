import json

import pytest
import torch

import moalign.rm as rm
from moalign.errors import UserError
from moalign.rm.model import MultiHeadRewardModel, expected_intensity, pool
from moalign.tags import strip_tags

DIMS = {"helpfulness": 5, "harmless": 2}
PROMPTS = ["<helpfulness 4><harmless max> How do I boil an egg?", "Name a colour.", "Why?"]
RESPONSES = ["Put it in boiling water for nine minutes.", "Blue.", "Because the sky scatters blue light more."]


@pytest.fixture(scope="module")
def model(tiny_bert_dir):
    torch.manual_seed(0)
    return MultiHeadRewardModel.from_backbone(str(tiny_bert_dir), DIMS, max_length=64)


def test_strip_tags_only_removes_the_leading_tags():
    assert strip_tags("<helpfulness 4> <harmless max>  Hi <b 2>") == "Hi <b 2>"
    assert strip_tags("<tone 3> Hi") == "Hi"  # any dimension, as parse_tags' grammar reads it
    assert strip_tags("<brevity 2.5> Hi") == "<brevity 2.5> Hi"  # not a tag in that grammar
    assert strip_tags("<div> text") == "<div> text"
    assert strip_tags("plain") == "plain"


def test_pool_mean_and_last_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # [1, 3, 2]
    right = torch.tensor([[1, 1, 0]])
    left = torch.tensor([[0, 1, 1]])
    assert pool(hidden, right, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, right, "last").tolist() == [[3.0, 4.0]]
    assert pool(hidden, left, "last").tolist() == [[9.0, 9.0]]


def test_expected_intensity_by_hand():
    assert expected_intensity(torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]])).tolist() == [2.0, 3.0]


def test_score_shapes_ranges_and_tag_invariance(model):
    assert model.pooling == "mean" and rm.MultiHeadRewardModel is MultiHeadRewardModel
    scores = model.score(PROMPTS, RESPONSES, batch_size=2)
    for dim, n in DIMS.items():
        assert scores.probs[dim].shape == (3, n)
        assert torch.allclose(scores.probs[dim].sum(-1), torch.ones(3))
        assert scores.expected[dim].shape == (3,)
        assert torch.all((scores.expected[dim] >= 1) & (scores.expected[dim] <= n))
    untagged = model.score([strip_tags(p) for p in PROMPTS], RESPONSES, batch_size=2)
    assert torch.equal(scores.probs["helpfulness"], untagged.probs["helpfulness"])


def test_batch_size_does_not_change_scores(model):
    one = model.score(PROMPTS, RESPONSES, batch_size=1)
    many = model.score(PROMPTS, RESPONSES, batch_size=8)
    for dim in DIMS:
        assert torch.allclose(one.probs[dim], many.probs[dim], atol=1e-5)


def test_one_backbone_forward_per_batch_for_all_heads(model):
    calls = []
    handle = model.backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        model.score(PROMPTS * 2, RESPONSES * 2, batch_size=4)
    finally:
        handle.remove()
    assert len(calls) == 2  # 6 pairs in batches of 4


def test_save_load_round_trip_gives_identical_scores(model, tmp_path):
    model.save(tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "reward_model.json").read_text())
    assert config["dimensions"] == DIMS and config["pooling"] == "mean" and config["backbone"]
    assert (tmp_path / "rm" / "model.safetensors").exists() and (tmp_path / "rm" / "tokenizer.json").exists()
    loaded = rm.load(tmp_path / "rm")
    assert loaded.dimensions == DIMS and not loaded.training
    before, after = model.score(PROMPTS, RESPONSES, batch_size=2), loaded.score(PROMPTS, RESPONSES, batch_size=2)
    for dim in DIMS:
        assert torch.equal(before.probs[dim], after.probs[dim])
        assert torch.equal(before.expected[dim], after.expected[dim])


def test_load_rejects_a_directory_that_is_not_a_reward_model(tiny_bert_dir):
    with pytest.raises(UserError, match="not a multi-head reward model directory"):
        rm.load(tiny_bert_dir)


def test_bad_dimensions_are_user_errors(tiny_bert_dir):
    with pytest.raises(UserError, match="at least 2 classes"):
        MultiHeadRewardModel.from_backbone(str(tiny_bert_dir), {"h": 1})
    with pytest.raises(UserError, match="dimension name"):
        MultiHeadRewardModel.from_backbone(str(tiny_bert_dir), {"a.b": 2})


def test_decoder_backbone_pools_the_last_token(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    config = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    decoder = MultiHeadRewardModel.from_backbone(str(tmp_path / "llama"), {"h": 3}, max_length=32)
    assert decoder.pooling == "last"
    one = decoder.score(PROMPTS, RESPONSES, batch_size=1)
    many = decoder.score(PROMPTS, RESPONSES, batch_size=3)  # right padding must not move the pooled token
    assert torch.allclose(one.probs["h"], many.probs["h"], atol=1e-5)
    decoder.save(tmp_path / "rm")
    assert torch.equal(rm.load(tmp_path / "rm").score(PROMPTS, RESPONSES, batch_size=3).probs["h"], many.probs["h"])
