"""MultiObjectiveReward: the [B, k] score matrix, tag stripping, checks, logging, aggregation."""

import json
import math

import pytest
import torch

from moalign.config import StrictModel
from moalign.errors import UserError
from moalign.rewards import MultiObjectiveReward, ScoreError
from moalign.rewards.scorers import SCORERS, register_scorer
from moalign.run_dir import RunDir
from moalign.tags import TagError

NAN = float("nan")
SEEN: dict[str, dict] = {}


class FixedConfig(StrictModel):
    values: list[float | None]


class SeenConfig(StrictModel):
    key: str = "seen"


if "test_fixed" not in SCORERS:

    @register_scorer("test_fixed", FixedConfig)
    def _fixed(config):
        return lambda prompts, completions, **columns: list(config.values)

    @register_scorer("test_fixed_partial", FixedConfig, partial=True)
    def _fixed_partial(config):
        return lambda prompts, completions, **columns: list(config.values)

    @register_scorer("test_seen", SeenConfig)
    def _seen(config):
        def score(prompts, completions, **columns):
            SEEN[config.key] = {"prompts": list(prompts), "completions": list(completions), "columns": columns}
            return [float(len(p)) for p in prompts]

        return score


def objective(name, scorer, **kw):
    return {"name": name, "scorer": scorer, **kw}


def test_score_matrix_and_weighted_sum_by_hand():
    reward = MultiObjectiveReward(
        [
            objective("words", "length", weight=0.5),
            objective("loops", {"repetition": {"n": 1}}, weight=-2.0),
        ]
    )
    prompts = ["Say it twice", "Say nothing"]
    completions = ["go go go stop", ""]
    matrix = reward.score(prompts, completions)
    assert matrix.names == ["words", "loops"]
    # words: 4 and 0; unigram repetition: "go go go stop" -> 4 unigrams, 2 distinct -> 0.5; "" -> 0
    torch.testing.assert_close(matrix.values, torch.tensor([[4.0, 0.5], [0.0, 0.0]], dtype=torch.float64))
    # r = 0.5 * words - 2 * loops
    assert reward(prompts, completions) == [pytest.approx(0.5 * 4 - 2 * 0.5), 0.0]


def test_tags_are_stripped_before_scorers_and_passed_as_a_column():
    reward = MultiObjectiveReward([objective("seen", {"test_seen": {"key": "strip"}})])
    matrix = reward.score(["<helpfulness 4> <honesty max> Hi there", "Plain"], ["a", "b"], extra=[1, 2])
    seen = SEEN["strip"]
    assert seen["prompts"] == ["Hi there", "Plain"]
    assert seen["columns"]["tags"] == [{"helpfulness": 4, "honesty": 5}, {}]
    assert seen["columns"]["extra"] == [1, 2]
    assert matrix.tags == [{"helpfulness": 4, "honesty": 5}, {}]
    assert matrix.values[:, 0].tolist() == [8.0, 5.0]


def test_tags_from_columns_merge_with_prompt_tags():
    reward = MultiObjectiveReward([objective("seen", {"test_seen": {"key": "cols"}})])
    matrix = reward.score(["Hi", "<honesty 2> Yo"], ["a", "b"], tag_helpfulness=[3, None], tag_honesty=[None, 2])
    assert matrix.tags == [{"helpfulness": 3}, {"honesty": 2}]
    with pytest.raises(TagError, match="sample 0: prompt tag <honesty 1> disagrees with column value 2"):
        reward.score(["<honesty 1> Hi"], ["a"], tag_honesty=[2])
    with pytest.raises(TagError, match="sample 1: .*unknown dimension 'tone'"):
        reward.score(["Hi", "<tone 2> Hi"], ["a", "b"])


def test_declared_dimensions_are_used_for_parsing():
    reward = MultiObjectiveReward(
        [objective("seen", {"test_seen": {"key": "dims"}}, tag_dimension="brevity")],
        tag_dimensions={"brevity": (1, 5), "structure": (1, 5)},
    )
    matrix = reward.score(["<brevity max> Hi", "<structure 2> Hello"], ["a", "b"])
    assert SEEN["dims"]["prompts"] == ["Hi", "Hello"]
    # the objective belongs to the brevity dimension: it does not apply to the second prompt
    assert matrix.values[0, 0].item() == 2.0 and math.isnan(matrix.values[1, 0].item())


def test_nan_from_a_scorer_that_must_score_names_objective_and_sample():
    reward = MultiObjectiveReward([objective("helpful", {"test_fixed": {"values": [1.0, NAN]}})])
    with pytest.raises(ScoreError, match=r"objective 'helpful' \(scorer 'test_fixed'\) returned nan for sample 1 "):
        reward.score(["a", "the second prompt"], ["x", "y"])
    reward = MultiObjectiveReward([objective("helpful", {"test_fixed": {"values": [1.0, None]}})])
    with pytest.raises(ScoreError, match="returned nan for sample 1 .*'the second prompt'"):
        reward.score(["a", "the second prompt"], ["x", "y"])


def test_inf_is_an_error_even_from_a_partial_scorer():
    reward = MultiObjectiveReward([objective("v", {"test_fixed_partial": {"values": [math.inf]}})])
    with pytest.raises(ScoreError, match="objective 'v' .*returned inf for sample 0"):
        reward.score(["a"], ["x"])


def test_wrong_number_of_scores_is_an_error():
    reward = MultiObjectiveReward([objective("v", {"test_fixed": {"values": [1.0]}})])
    with pytest.raises(ScoreError, match="returned 1 scores for 2 samples"):
        reward.score(["a", "b"], ["x", "y"])


def test_not_applicable_scores_are_left_out_of_the_aggregate():
    reward = MultiObjectiveReward(
        [
            objective("always", {"test_fixed": {"values": [1.0, 2.0, 3.0]}}, weight=2.0),
            objective("sometimes", {"test_fixed_partial": {"values": [10.0, NAN, None]}}),
        ]
    )
    matrix = reward.score(["a", "b", "c"], ["x", "y", "z"])
    assert matrix.applicable.tolist() == [[True, True], [True, False], [True, False]]
    assert reward.aggregate(matrix).tolist() == [2 * 1 + 10, 2 * 2, 2 * 3]

    only_partial = MultiObjectiveReward([objective("s", {"test_fixed_partial": {"values": [NAN, 4.0]}})])
    out = only_partial(["a", "b"], ["x", "y"])
    assert math.isnan(out[0]) and out[1] == 4.0  # nothing applies to sample 0: no reward, not 0


def test_objective_tied_to_a_tag_dimension_applies_only_where_tagged():
    reward = MultiObjectiveReward(
        [
            objective("base", {"test_fixed": {"values": [1.0, 1.0]}}),
            objective("help", {"test_fixed": {"values": [5.0, NAN]}}, tag_dimension="helpfulness"),
        ]
    )
    # the scorer's NaN for the untagged sample 1 is fine: the objective does not apply there
    matrix = reward.score(["<helpfulness 3> a", "b"], ["x", "y"])
    assert reward.aggregate(matrix).tolist() == [6.0, 1.0]


def test_gap_to_ideal_and_soft_chebyshev_from_objectives():
    objectives = [
        objective("a", {"test_fixed": {"values": [1.0]}}, ideal=3.0, weight=0.5),
        objective("b", {"test_fixed": {"values": [4.0]}}, ideal=0.0),
    ]
    gap = MultiObjectiveReward(objectives, "gap_to_ideal")
    assert gap(["p"], ["c"]) == [pytest.approx(-(0.5 * 2 + 4))]
    soft = MultiObjectiveReward(objectives, {"soft_chebyshev": {"tau": 0.5}})
    assert soft(["p"], ["c"]) == [pytest.approx(-0.5 * math.log(math.exp(1 / 0.5) + math.exp(4 / 0.5)))]


def test_per_objective_group_normalisation():
    reward = MultiObjectiveReward(
        [objective("a", {"test_fixed": {"values": [1.0, 3.0, 7.0, 7.0]}}, normalize="group")],
    )
    # groups are prompts: [1, 3] -> [-1, 1]; [7, 7] -> [0, 0]
    assert reward(["p", "p", "q", "q"], ["w", "x", "y", "z"]) == [-1.0, 1.0, 0.0, 0.0]
    batch = MultiObjectiveReward([objective("a", {"test_fixed": {"values": [1.0, 3.0]}}, normalize="batch")])
    assert batch(["p", "q"], ["x", "y"]) == [-1.0, 1.0]


def test_metrics_are_logged_per_objective(tmp_path):
    run = RunDir(tmp_path / "run")
    reward = MultiObjectiveReward(
        [
            objective("a", {"test_fixed": {"values": [1.0, 3.0]}}),
            objective("b", {"test_fixed_partial": {"values": [NAN, 5.0]}}),
            objective("c", {"test_fixed_partial": {"values": [NAN, NAN]}}),
        ],
        log=lambda metrics: run.log_metrics(metrics, stage="01-test", step=1),
    )
    reward(["p", "q"], ["x", "y"])
    (record,) = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert record["reward/a/mean"] == 2.0 and record["reward/a/std"] == 1.0
    assert record["reward/b/mean"] == 5.0 and record["reward/b/std"] == 0.0
    assert "reward/c/mean" not in record  # never applied: nothing to log (and no NaN in the JSON)
    assert record["reward/mean"] == pytest.approx((1.0 + 8.0) / 2)


def test_chat_format_prompts_and_completions():
    reward = MultiObjectiveReward([objective("seen", {"test_seen": {"key": "chat"}})])
    prompts = [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "<honesty 2> Hello"}]]
    completions = [[{"role": "assistant", "content": "Hi!"}]]
    matrix = reward.score(prompts, completions)
    assert SEEN["chat"]["prompts"] == ["Hello"] and SEEN["chat"]["completions"] == ["Hi!"]
    assert matrix.tags == [{"honesty": 2}]


def test_empty_batch():
    reward = MultiObjectiveReward([objective("words", "length")])
    assert reward([], []) == []


def test_invalid_objectives_are_user_errors():
    with pytest.raises(UserError, match=r"objectives\[0\].ideal: aggregator 'gap_to_ideal' needs an ideal"):
        MultiObjectiveReward([objective("a", "length")], "gap_to_ideal")
    with pytest.raises(UserError, match="at least one objective"):
        MultiObjectiveReward([])
    with pytest.raises(UserError, match=r"unknown aggregator 'wieghted_sum' \(did you mean 'weighted_sum'\?\)"):
        MultiObjectiveReward([objective("a", "length")], "wieghted_sum")
    with pytest.raises(UserError, match="tag dimension 'tone' is not declared"):
        MultiObjectiveReward([objective("a", "length", tag_dimension="tone")])
    with pytest.raises(
        UserError, match=r"objectives\[0\].scorer: .*unknown scorer 'lenght' \(did you mean 'length'\?\)"
    ):
        MultiObjectiveReward([objective("a", "lenght")])


def test_scorer_build_errors_name_the_objective(tmp_path):
    with pytest.raises(UserError, match=r"objective 'fluency' \(scorer 'classifier'\): model '.*' does not exist"):
        MultiObjectiveReward([objective("fluency", {"classifier": {"model": str(tmp_path / "x"), "label": 0}})])
