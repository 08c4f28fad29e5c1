"""Scorers that need no model (length in words/characters, repetition) or only a tokenizer."""

import pytest
from pydantic import ValidationError

from moalign.errors import UserError
from moalign.rewards.scorers import SCORERS, ModelCache
from moalign.rewards.scorers.length import length_penalty
from moalign.rewards.scorers.repetition import repeated_ngram_share


def build(name, **config):
    d = SCORERS.get(name)
    return d.create(d.config_cls.model_validate(config), ModelCache())


def test_length_in_words_and_characters_with_empty_completion():
    completions = ["one two  three", "", "x"]
    prompts = ["p"] * 3
    assert build("length")(prompts, completions) == [3.0, 0.0, 1.0]
    assert build("length", unit="characters")(prompts, completions) == [14.0, 0.0, 1.0]


def test_length_in_tokens(tiny_bert_dir):
    score = build("length", unit="tokens", tokenizer=str(tiny_bert_dir))
    # the MiniLM (BERT uncased) tokenizer: "hello world" -> [hello, world]; special tokens are not counted
    assert score(["p", "p", "p"], ["hello world", "", "hello"]) == [2.0, 0.0, 1.0]


def test_length_penalties_by_hand():
    assert length_penalty(7, 5, "absolute") == -2
    assert length_penalty(3, 5, "absolute") == -2
    assert length_penalty(7, 5, "over") == -2
    assert length_penalty(3, 5, "over") == 0
    assert length_penalty(7, 5, "over_squared") == -4
    score = build("length", target=2, penalty="over_squared")
    assert score(["p"] * 3, ["a b c d", "a", ""]) == [-4.0, 0.0, 0.0]


def test_length_against_a_per_sample_target_column():
    score = build("length", target_column="reference", penalty="over")
    # seed 004's dynamic penalty: the reference answer's length is the target
    out = score(["p", "p", "p"], ["a b c", "a b c", ""], reference=["a b", 5, "x y"])
    assert out == [-1.0, 0.0, 0.0]
    with pytest.raises(UserError, match="no column 'reference'"):
        score(["p"], ["a"])


def test_length_config_rejects_two_targets():
    with pytest.raises(ValidationError, match="either target or target_column"):
        SCORERS.get("length").config_cls.model_validate({"target": 3, "target_column": "ref"})


def test_repeated_ngram_share_by_hand():
    # seed 004's loop: "confidence: 95% confidence: 95% confidence: 95%" has the word trigrams
    # (c,95,c) (95,c,95) (c,95,c) (95,c,95): 4 in all, 2 distinct -> (4 - 2) / 4 = 0.5
    words = "confidence: 95% confidence: 95% confidence: 95%".split()
    assert repeated_ngram_share(words, 3) == 0.5
    assert repeated_ngram_share(["a", "b", "c"], 1) == 0.0
    assert repeated_ngram_share(["a", "a", "a", "a"], 1) == 0.75
    assert repeated_ngram_share([], 3) == 0.0  # no n-gram: nothing repeated
    assert repeated_ngram_share(["a", "b"], 3) == 0.0


def test_repetition_scorer():
    score = build("repetition")
    out = score(["p"] * 3, ["Hello! Confidence: 95% Confidence: 95% confidence: 95%", "", "a fresh answer here"])
    # lower-cased words: hello! confidence: 95% confidence: 95% confidence: 95% -> 5 trigrams, 3 distinct
    assert out == [pytest.approx(2 / 5), 0.0, 0.0]
    assert build("repetition", n=1, unit="characters", lowercase=False)(["p"], ["aAa"]) == [pytest.approx(1 / 3)]
