"""Scorers backed by tiny random Hugging Face models: reward_model, classifier, relevance, perplexity."""

import json
import math
import shutil

import pytest
import torch

from moalign.errors import UserError
from moalign.rewards.scorers import SCORERS, ModelCache
from moalign.rewards.scorers.relevance import pool

PROMPTS = ["What is DNS?", "Name a colour.", "Say hi", "Explain recursion in one line.", "2+2?"]
COMPLETIONS = ["It maps names to addresses.", "", "hi hi hi hi", "A function calling itself.", "4"]


def build(name, models=None, **config):
    d = SCORERS.get(name)
    return d.create(d.config_cls.model_validate(config), models if models is not None else ModelCache())


def one_at_a_time(score):
    return [score([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]


# --- reward_model and classifier ---------------------------------------------------------------


def test_reward_model_scores_question_answer_pairs(tiny_rm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    score = build("reward_model", model=str(tiny_rm_dir), batch_size=2, device="cpu")
    out = score(PROMPTS, COMPLETIONS)  # 5 samples > batch size 2
    assert len(out) == 5 and all(math.isfinite(v) for v in out)  # the empty completion included
    # the way OpenAssistant's reward models expect it: tokenizer(question, answer) -> logits[0]
    tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    with torch.no_grad():
        expected = model(**tok(PROMPTS[0], COMPLETIONS[0], return_tensors="pt")).logits[0, 0].item()
    assert out[0] == pytest.approx(expected, abs=1e-5)
    assert out == pytest.approx(one_at_a_time(score), abs=1e-5)  # padding and batching change nothing


def test_reward_model_with_several_outputs_needs_a_label(tiny_classifier_dir):
    with pytest.raises(UserError, match="has 2 outputs: set 'label'"):
        build("reward_model", model=str(tiny_classifier_dir))
    assert len(build("reward_model", model=str(tiny_classifier_dir), label="fluent")(["q"], ["a"])) == 1


def test_classifier_probability_and_complement(tiny_classifier_dir):
    models = ModelCache()
    disfluent = build("classifier", models, model=str(tiny_classifier_dir), label="disfluent", batch_size=2)
    fluency = build("classifier", models, model=str(tiny_classifier_dir), label=1, complement=True, batch_size=2)
    fluent = build("classifier", models, model=str(tiny_classifier_dir), label="FLUENT")
    p_dis, p_flu, p_fluent = (
        disfluent(PROMPTS, COMPLETIONS),
        fluency(PROMPTS, COMPLETIONS),
        fluent(PROMPTS, COMPLETIONS),
    )
    assert all(0 <= p <= 1 for p in p_dis)
    # fluency = 1 - P(disfluent) (seed 000); with two softmax labels that is P(fluent)
    assert p_flu == pytest.approx([1 - p for p in p_dis], abs=1e-6)
    assert p_fluent == pytest.approx(p_flu, abs=1e-6)
    assert p_dis == pytest.approx(one_at_a_time(disfluent), abs=1e-5)


def test_objectives_on_one_model_share_one_load_and_one_forward(tiny_classifier_dir):
    models = ModelCache()
    a = build("classifier", models, model=str(tiny_classifier_dir), label="fluent", device="cpu")
    b = build("classifier", models, model=str(tiny_classifier_dir), label="disfluent", device="cpu")
    assert len(models) == 1
    clf = models.values()[0]
    a(PROMPTS, COMPLETIONS)
    b(PROMPTS, COMPLETIONS)
    assert clf.forwards == 1
    b(PROMPTS[:2], COMPLETIONS[:2])  # a new batch is computed
    assert clf.forwards == 2


def test_classifier_unknown_label_lists_the_labels(tiny_classifier_dir):
    with pytest.raises(UserError, match=r"no label 'toxic'; its labels are 0: fluent, 1: disfluent"):
        build("classifier", model=str(tiny_classifier_dir), label="toxic")


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build("classifier", model=str(tmp_path / "nope"), label=0)


# --- relevance ---------------------------------------------------------------------------------


def test_pooling_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(pool(hidden, mask, "max"), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(pool(hidden, mask, "mean_sqrt_len"), torch.tensor([[4.0, 6.0]]) / math.sqrt(2))


def test_relevance_is_a_cosine_similarity(tiny_bert_dir):
    score = build("relevance", model=str(tiny_bert_dir), batch_size=2, device="cpu")
    out = score(PROMPTS, COMPLETIONS)
    assert len(out) == 5 and all(-1 - 1e-6 <= v <= 1 + 1e-6 for v in out)  # the empty completion included
    assert score(["same text"], ["same text"]) == [pytest.approx(1.0, abs=1e-5)]
    assert out == pytest.approx(one_at_a_time(score), abs=1e-5)


def test_relevance_pooling_follows_the_sentence_transformers_config(tiny_bert_dir, tmp_path):
    model_dir = tmp_path / "st-model"
    shutil.copytree(tiny_bert_dir, model_dir)
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    models = ModelCache()
    build("relevance", models, model=str(model_dir), device="cpu")
    build("relevance", models, model=str(tiny_bert_dir), device="cpu")
    poolings = sorted(enc.pooling for enc in models.values())
    assert poolings == ["cls", "mean"]  # a model without a pooling config is mean-pooled


@pytest.mark.integration
def test_relevance_default_backbone_is_minilm_with_mean_pooling():
    models = ModelCache()
    score = build("relevance", models, device="cpu")
    (encoder,) = models.values()
    assert encoder.pooling == "mean" and encoder.max_length == 256
    related, unrelated = score(["How do I bake bread?"] * 2, ["Knead the dough and bake it.", "The stock fell 3%."])
    assert related > unrelated


# --- perplexity --------------------------------------------------------------------------------


def test_perplexity_is_the_negative_mean_token_nll(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    score = build("perplexity", model=str(tiny_llama_dir), prompt_format="plain", batch_size=2, device="cpu")
    out = score(PROMPTS, COMPLETIONS)
    assert len(out) == 5 and all(math.isfinite(v) and v < 0 for v in out)  # the empty completion included
    # by hand for sample 0: -(1/T) sum_t -log p(y_t | prompt, y_<t) over the completion + EOS, unpadded
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    prompt_ids = tok(PROMPTS[0])["input_ids"]
    completion_ids = [*tok(COMPLETIONS[0], add_special_tokens=False)["input_ids"], tok.eos_token_id]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = model(ids).logits[0].log_softmax(-1)
    nll = [-logp[len(prompt_ids) - 1 + t, tok_id].item() for t, tok_id in enumerate(completion_ids)]
    assert out[0] == pytest.approx(-sum(nll) / len(nll), abs=1e-4)
    # left padding in batches of 2 changes nothing
    assert out == pytest.approx(one_at_a_time(score), abs=1e-4)


def test_perplexity_chat_format_and_truncation(tiny_llama_dir):
    models = ModelCache()
    chat = build("perplexity", models, model=str(tiny_llama_dir), device="cpu")
    short = build("perplexity", models, model=str(tiny_llama_dir), max_length=6, device="cpu")
    assert len(models) == 1  # one loaded reference model for both objectives
    long_prompt = "word " * 50
    for out in (chat([long_prompt, ""], ["an answer", ""]), short([long_prompt, "p"], ["a b c d e f g h", ""])):
        assert all(math.isfinite(v) for v in out)
