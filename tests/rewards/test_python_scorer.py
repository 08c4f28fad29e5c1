import textwrap

import pytest
from pydantic import ValidationError

from moalign.errors import UserError
from moalign.rewards.scorers import SCORERS, ModelCache

FUNCTIONS = """
def word_count(prompts, completions, **columns):
    return [len(c.split()) for c in completions]


def only_with_reference(prompts, completions, reference=None, bonus=0.0, **columns):
    return [None if r is None else float(r == c) + bonus for r, c in zip(reference, completions)]


def broken_nan(prompts, completions, **columns):
    return [float("nan")] * len(completions)


def too_few(prompts, completions, **columns):
    return [1.0]


def words(prompts, completions, **columns):
    return ["high"] * len(completions)


not_callable = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards"


def build(**config):
    d = SCORERS.get("python")
    return d.create(d.config_cls.model_validate(config), ModelCache())


def test_user_function_gets_prompts_completions_and_columns(user_module):
    assert build(function=f"{user_module}:word_count")(["p", "p"], ["a b", ""]) == [2.0, 0.0]
    score = build(function=f"{user_module}:only_with_reference", kwargs={"bonus": 0.5})
    out = score(["p"] * 3, ["x", "y", "z"], reference=["x", None, "q"])
    assert out[0] == 1.5 and out[2] == 0.5
    assert out[1] != out[1]  # None -> NaN: does not apply


def test_user_function_errors_name_the_function_and_sample(user_module):
    with pytest.raises(UserError, match=rf"'{user_module}:broken_nan': sample 0: score nan \(return None"):
        build(function=f"{user_module}:broken_nan")(["p"], ["c"])
    with pytest.raises(UserError, match="returned 1 scores for 2 samples"):
        build(function=f"{user_module}:too_few")(["p", "p"], ["c", "d"])
    with pytest.raises(UserError, match="sample 0: expected a number or None, got 'high'"):
        build(function=f"{user_module}:words")(["p"], ["c"])
    with pytest.raises(UserError, match="clash with data columns"):
        build(function=f"{user_module}:only_with_reference", kwargs={"reference": 1})(["p"], ["c"], reference=["c"])


def test_bad_references(user_module):
    with pytest.raises(UserError, match="cannot import module 'no_such_module_xyz'"):
        build(function="no_such_module_xyz:f")
    with pytest.raises(UserError, match="has no function 'missing'"):
        build(function=f"{user_module}:missing")
    with pytest.raises(UserError, match="has no function 'not_callable'"):
        build(function=f"{user_module}:not_callable")
    with pytest.raises(ValidationError, match="should match pattern"):
        build(function="my_rewards.word_count")
