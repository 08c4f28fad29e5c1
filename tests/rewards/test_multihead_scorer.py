"""The ``multihead`` scorer and the MOSLIM reward, against a test double of ``moalign.rm``'s contract.

Contract (issue 5): ``moalign.rm.load(path)`` returns a model with ``.dimensions: dict[str, int]``
(intensities 1..n) and ``.score(prompts, responses, batch_size=...)`` returning an object with
``.probs[dim]: Tensor[B, n]`` and ``.expected[dim]: Tensor[B]``.
"""

import math
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from moalign.errors import UserError
from moalign.rewards import MultiObjectiveReward
from moalign.rewards.scorers import SCORERS, ModelCache

# P(intensity) per response: helpfulness has 5 intensities, harmless 2
TABLE = {
    "good": {"helpfulness": [0.0, 0.0, 0.0, 0.5, 0.5], "harmless": [0.2, 0.8]},
    "bad": {"helpfulness": [0.5, 0.5, 0.0, 0.0, 0.0], "harmless": [0.9, 0.1]},
    "": {"helpfulness": [0.2] * 5, "harmless": [0.5, 0.5]},
}


@dataclass
class FakeScores:
    probs: dict[str, torch.Tensor]
    expected: dict[str, torch.Tensor]


class FakeRewardModel:
    dimensions = {"helpfulness": 5, "harmless": 2}

    def __init__(self, path):
        self.path = path
        self.calls: list[tuple[list[str], int]] = []

    def score(self, prompts, responses, batch_size=8):
        self.calls.append((list(prompts), batch_size))
        probs = {d: torch.tensor([TABLE[r][d] for r in responses]) for d in self.dimensions}
        expected = {d: (p * torch.arange(1, p.shape[1] + 1)).sum(dim=1) for d, p in probs.items()}
        return FakeScores(probs=probs, expected=expected)


@pytest.fixture
def fake_rm(monkeypatch):
    loaded: list[FakeRewardModel] = []

    def load(path):
        loaded.append(FakeRewardModel(path))
        return loaded[-1]

    module = types.ModuleType("moalign.rm")
    module.load = load
    monkeypatch.setitem(sys.modules, "moalign.rm", module)
    return loaded


def build(models, **config):
    d = SCORERS.get("multihead")
    return d.create(d.config_cls.model_validate({"model": "rm-dir", **config}), models)


def test_expected_intensity(fake_rm):
    score = build(ModelCache(), dimension="helpfulness", batch_size=4)
    # good: 4*0.5 + 5*0.5 = 4.5; bad: 1*0.5 + 2*0.5 = 1.5; empty: 0.2*(1+2+3+4+5) = 3
    assert score(["q"] * 3, ["good", "bad", ""]) == pytest.approx([4.5, 1.5, 3.0])
    assert fake_rm[0].calls == [(["q"] * 3, 4)]


def test_target_probability_from_the_prompt_tags(fake_rm):
    score = build(ModelCache(), dimension="harmless", output="target_probability")
    tags = [{"harmless": 2}, {"harmless": 1}, {"helpfulness": 3}]
    out = score(["a", "b", "c"], ["good", "bad", "good"], tags=tags)
    assert out[:2] == pytest.approx([0.8, 0.9]) and math.isnan(out[2])  # untagged: does not apply
    fixed = build(ModelCache(), dimension="helpfulness", output="target_probability", target="max")
    assert fixed(["a", "b"], ["good", "bad"]) == pytest.approx([0.5, 0.0])


def test_all_heads_share_one_model_and_one_forward_per_batch(fake_rm):
    models = ModelCache()
    helpful = build(models, dimension="helpfulness")
    harmless = build(models, dimension="harmless", output="target_probability", target=2)
    helpful(["a", "b"], ["good", "bad"])
    harmless(["a", "b"], ["good", "bad"])
    assert len(fake_rm) == 1 and len(fake_rm[0].calls) == 1
    helpful(["a"], ["bad"])
    assert len(fake_rm[0].calls) == 2


def test_errors(fake_rm):
    with pytest.raises(
        UserError, match="reward model 'rm-dir' has no dimension 'honesty'; it has helpfulness, harmless"
    ):
        build(ModelCache(), dimension="honesty")
    score = build(ModelCache(), dimension="harmless", output="target_probability")
    with pytest.raises(UserError, match=r"sample 0: target intensity 5 for dimension 'harmless' is outside .* 1..2"):
        score(["a"], ["good"], tags=[{"harmless": 5}])


def test_moslim_reward_end_to_end_with_state(fake_rm):
    objectives = [
        {
            "name": dim,
            "scorer": {"multihead": {"model": "rm-dir", "dimension": dim, "output": "target_probability"}},
            "tag_dimension": dim,
        }
        for dim in ("helpfulness", "harmless")
    ]
    logged = []
    reward = MultiObjectiveReward(objectives, {"moslim": {"k": "all"}}, log=logged.append)
    prompts = ["<helpfulness 4> <harmless 2> q1", "<helpfulness 4> q2", "<harmless 2> q3"]
    out = reward(prompts, ["good", "bad", "bad"])
    assert len(fake_rm[0].calls) == 1  # both objectives, one forward pass
    assert fake_rm[0].calls[0][0] == ["q1", "q2", "q3"]  # the reward model never sees the tags
    # p_target: helpfulness@4 -> [0.5, 0.0, -]: mean 0.25, std 0.25 -> z = [1, -1]
    #           harmless@2    -> [0.8, -, 0.1]: mean 0.45, std 0.35 -> z = [1, -, -1]
    # k = all (2 dimensions): r = [(1 + 1)/2, -1/2, -1/2]
    assert out == pytest.approx([1.0, -0.5, -0.5])
    assert logged[0]["reward/helpfulness/mean"] == pytest.approx(0.25)
    assert logged[0]["reward/harmless/mean"] == pytest.approx(0.45)

    resumed = MultiObjectiveReward(objectives, {"moslim": {"k": "all"}})
    resumed.load_state_dict(reward.state_dict())
    resumed.train = reward.train = False  # evaluation: statistics frozen
    batch = (["<helpfulness 4> q"], ["good"])
    assert resumed(*batch) == reward(*batch) == pytest.approx([(0.5 - 0.25) / 0.25 / 2])


def test_moslim_plus_an_untagged_objective_by_hand(fake_rm, tmp_path):
    fn = tmp_path / "always_on.py"
    fn.write_text(
        "def score(prompts, completions, **cols):\n    return [2.0 if c == 'good' else 0.0 for c in completions]\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        objectives = [
            {
                "name": "helpfulness",
                "scorer": {
                    "multihead": {"model": "rm-dir", "dimension": "helpfulness", "output": "target_probability"}
                },
                "tag_dimension": "helpfulness",
            },
            {"name": "always", "scorer": {"python": {"function": "always_on:score"}}, "weight": 0.5},
        ]
        reward = MultiObjectiveReward(objectives, {"moslim": {"k": "all"}})
        out = reward(["<helpfulness 4> q1", "<helpfulness 4> q2", "q3"], ["good", "bad", "good"])
    finally:
        sys.path.remove(str(tmp_path))
    # tagged part: helpfulness@4 p = [0.5, 0.0] -> mean 0.25, std 0.25 -> z = [1, -1]; k = 1 dimension
    # untagged part: 0.5 * [2, 0, 2]; the untagged prompt q3 has only that part
    assert out == pytest.approx([1.0 + 1.0, -1.0 + 0.0, 1.0])
