import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.errors import UserError
from moalign.rewards import aggregate
from moalign.rewards.aggregators import (
    AGGREGATORS,
    SoftChebyshevConfig,
    chebyshev,
    gap_to_ideal,
    group_zscore,
    moslim_reward,
    normalize_then_sum,
    soft_chebyshev,
    weighted_sum,
)

NAN = float("nan")


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def assert_close(actual, expected):
    torch.testing.assert_close(actual, t(expected), equal_nan=True)


# --- worked examples ---------------------------------------------------------------------------


def test_weighted_sum_by_hand_with_nan_and_mask():
    scores = t([[1.0, 2.0], [3.0, NAN], [NAN, NAN]])
    # row 0: 0.5*1 + 2*2 = 4.5; row 1: the NaN objective is left out: 0.5*3 = 1.5; row 2: nothing applies
    assert_close(weighted_sum(scores, [0.5, 2.0]), [4.5, 1.5, NAN])
    mask = torch.tensor([[True, False], [True, True], [True, True]])
    assert_close(weighted_sum(scores, [0.5, 2.0], mask), [0.5, 1.5, NAN])
    assert_close(weighted_sum(scores), [3.0, 3.0, NAN])  # default weights are 1


def test_gap_to_ideal_by_hand():
    scores = t([[1.0, 2.0], [3.0, NAN], [2.0, 2.0]])
    # row 0: -(0.5*|1-2| + 2*|2-2|) = -0.5; row 1: -(0.5*|3-2|) = -0.5; row 2: at the ideal, 0
    assert_close(gap_to_ideal(scores, [2.0, 2.0], [0.5, 2.0]), [-0.5, -0.5, 0.0])
    mask = torch.tensor([[False, True], [True, False], [True, True]])
    assert_close(gap_to_ideal(scores, [2.0, 2.0], [0.5, 2.0], mask), [0.0, -0.5, 0.0])


def test_chebyshev_and_soft_chebyshev_by_hand():
    scores = t([[0.0, 5.0], [0.0, NAN]])
    ideals, weights = [1.0, 1.0], [2.0, 1.0]
    # effective gaps: row 0 = (2*1, 1*4) = (2, 4); row 1 = (2,)
    assert_close(chebyshev(scores, ideals, weights), [-4.0, -2.0])
    # soft: -tau*log(exp(2/tau) + exp(4/tau)); tau = 1 -> -(4 + log(1 + e^-2)) = -4.126928...
    expected = -(4 + math.log(1 + math.exp(-2)))
    assert_close(soft_chebyshev(scores, ideals, weights, tau=1.0), [expected, -2.0])
    assert expected == pytest.approx(-4.1269280110429727)
    # tau = 0.5: -0.5*log(e^4 + e^8) = -(4 + 0.5*log(1 + e^-4))
    assert_close(soft_chebyshev(scores, ideals, weights, tau=0.5), [-(4 + 0.5 * math.log(1 + math.exp(-4))), -2.0])


def test_normalize_then_sum_by_hand():
    scores = t([[1.0, 10.0], [3.0, 30.0], [5.0, 0.0], [5.0, 0.0]])
    groups = ["a", "a", "b", "b"]
    # group a: [1, 3] -> mean 2, population std 1 -> z = [-1, 1]; [10, 30] -> [-1, 1]
    # group b: constant columns -> z = 0
    assert_close(group_zscore(scores, groups), [[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    assert_close(normalize_then_sum(scores, [1.0, 2.0], groups=groups), [-3.0, 3.0, 0.0, 0.0])
    # without groups the batch is one group: column 0 = [1, 3, 5, 5], mean 3.5, std sqrt(2.75)
    z0 = (1 - 3.5) / math.sqrt(2.75)
    assert group_zscore(scores)[0, 0].item() == pytest.approx(z0)


def test_group_zscore_leaves_inactive_entries_out():
    scores = t([[1.0], [NAN], [3.0], [100.0]])
    mask = torch.tensor([[True], [True], [True], [False]])
    # active entries of the group: [1, 3] -> [-1, 1]; the NaN and the masked 100 are not counted
    assert_close(group_zscore(scores, mask=mask), [[-1.0], [NAN], [1.0], [NAN]])


def test_group_zscore_matches_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    scores[torch.rand(40, 3, generator=gen) < 0.2] = NAN
    groups = [i % 7 for i in range(40)]
    expected = torch.full_like(scores, NAN)
    for g in set(groups):
        rows = [i for i in range(40) if groups[i] == g]
        for j in range(3):
            active = [i for i in rows if not math.isnan(scores[i, j])]
            vals = [scores[i, j].item() for i in active]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
            for i in active:
                expected[i, j] = (scores[i, j].item() - mean) / max(std, 1e-6)
    torch.testing.assert_close(group_zscore(scores, groups), expected, equal_nan=True)


def test_moslim_reward_by_hand_for_both_readings_of_k():
    p = t([[0.6, NAN, 0.2], [NAN, NAN, NAN]])
    mean = t([[0.4, 0.0, 0.1], [0.0, 0.0, 0.0]])
    std = t([[0.1, 1.0, 0.05], [1.0, 1.0, 1.0]])
    # z = [(0.6-0.4)/0.1, -, (0.2-0.1)/0.05] = [2, -, 2]
    assert_close(moslim_reward(p, mean, std, k="all"), [4.0 / 3.0, NAN])  # divide by all 3 dimensions
    assert_close(moslim_reward(p, mean, std, k="active"), [2.0, NAN])  # divide by the 2 tagged ones
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert_close(moslim_reward(p, mean, std, mask, k="all"), [2.0 / 3.0, NAN])


def test_aggregate_dispatches_every_stateless_method():
    scores = t([[1.0, 2.0]])
    assert_close(aggregate("weighted_sum", scores, weights=[1, 1]), [3.0])
    assert_close(aggregate("gap_to_ideal", scores, ideals=[0, 0]), [-3.0])
    assert_close(aggregate("chebyshev", scores, ideals=[0, 0]), [-2.0])
    assert_close(aggregate("soft_chebyshev", scores, ideals=[0, 0], tau=1.0), [-math.log(math.e + math.e**2)])
    assert_close(aggregate("normalize_then_sum", scores), [0.0])
    mask = torch.tensor([[True, False]])
    assert_close(aggregate("weighted_sum", scores, mask=mask), [1.0])


def test_aggregate_errors():
    scores = t([[1.0, 2.0]])
    with pytest.raises(UserError, match=r"unknown aggregator 'chebychev' \(did you mean 'chebyshev'\?\)"):
        aggregate("chebychev", scores)
    with pytest.raises(ValueError, match="MoslimMapper"):
        aggregate("moslim", scores)
    with pytest.raises(ValueError, match="needs ideals"):
        aggregate("gap_to_ideal", scores)
    with pytest.raises(ValueError, match="weights has 3 values for 2 objectives"):
        aggregate("weighted_sum", scores, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="non-negative weights"):
        aggregate("chebyshev", scores, ideals=[0, 0], weights=[1, -1])
    with pytest.raises(ValueError, match="tau must be positive"):
        aggregate("soft_chebyshev", scores, ideals=[0, 0], tau=0.0)
    with pytest.raises(ValueError, match=r"must be \[B, k\]"):
        aggregate("weighted_sum", torch.ones(3))
    with pytest.raises(ValueError, match="mask shape"):
        aggregate("weighted_sum", scores, mask=torch.ones(2, 2, dtype=torch.bool))


def test_aggregate_takes_the_method_config_or_its_fields():
    scores = t([[1.0, 2.0]])
    expected = [-math.log(math.exp(0.5) + math.exp(1.0)) * 2.0]  # tau 2: -2 log(e^(1/2) + e^(2/2))
    assert_close(aggregate("soft_chebyshev", scores, ideals=[0, 0], config=SoftChebyshevConfig(tau=2.0)), expected)
    entry = AGGREGATORS.get("soft_chebyshev")
    assert_close(entry.reward(scores, None, [0, 0], None, None, SoftChebyshevConfig(tau=2.0)), expected)
    with pytest.raises(TypeError, match="tau"):
        aggregate("weighted_sum", scores, tau=2.0)
    with pytest.raises(TypeError, match="tau"):
        aggregate("soft_chebyshev", scores, ideals=[0, 0], config=SoftChebyshevConfig(), tau=2.0)


# --- properties --------------------------------------------------------------------------------

finite = st.floats(-100, 100, allow_nan=False)


@st.composite
def problems(draw, max_k=4, max_b=5):
    k = draw(st.integers(1, max_k))
    b = draw(st.integers(1, max_b))
    scores = draw(st.lists(st.lists(finite, min_size=k, max_size=k), min_size=b, max_size=b))
    ideals = draw(st.lists(finite, min_size=k, max_size=k))
    weights = draw(st.lists(st.floats(0.01, 10), min_size=k, max_size=k))
    return t(scores), t(ideals), t(weights)


@given(problems())
def test_gap_to_ideal_is_zero_exactly_at_the_ideal_and_negative_elsewhere(problem):
    scores, ideals, weights = problem
    at_ideal = ideals.expand_as(scores).clone()
    assert (gap_to_ideal(at_ideal, ideals, weights) == 0).all()
    r = gap_to_ideal(scores, ideals, weights)
    off = (scores != ideals).any(dim=1)
    assert (r[off] < 0).all() and (r[~off] == 0).all()


@given(problems(), st.floats(1e-3, 10))
def test_soft_chebyshev_is_within_tau_log_k_below_chebyshev(problem, tau):
    scores, ideals, weights = problem
    hard = chebyshev(scores, ideals, weights)
    soft = soft_chebyshev(scores, ideals, weights, tau=tau)
    k = scores.shape[1]
    assert (soft <= hard + 1e-9).all()
    assert (soft >= hard - tau * math.log(k) - 1e-9).all()


@given(problems())
def test_soft_chebyshev_tends_to_chebyshev_as_tau_shrinks(problem):
    scores, ideals, weights = problem
    hard = chebyshev(scores, ideals, weights)
    gaps = [(soft_chebyshev(scores, ideals, weights, tau=tau) - hard).abs().max().item() for tau in (1.0, 1e-2, 1e-4)]
    assert gaps[2] <= 1e-4 * math.log(scores.shape[1]) + 1e-9
    assert gaps[0] + 1e-9 >= gaps[1] and gaps[1] + 1e-9 >= gaps[2]  # shrinking (up to rounding)


@given(problems(), problems(), finite, finite)
def test_weighted_sum_is_linear(p1, p2, a, b):
    x, _, w = p1
    y = p2[0]
    if x.shape != y.shape:
        y = torch.zeros_like(x)
    lhs = weighted_sum(a * x + b * y, w)
    rhs = a * weighted_sum(x, w) + b * weighted_sum(y, w)
    torch.testing.assert_close(lhs, rhs, atol=1e-6, rtol=1e-9)
    # and linear in the weights
    torch.testing.assert_close(weighted_sum(x, 2 * w), 2 * weighted_sum(x, w))


@settings(max_examples=50)
@given(problems(), st.sampled_from(["weighted_sum", "gap_to_ideal", "chebyshev", "soft_chebyshev"]))
def test_a_nan_objective_is_left_out_not_counted_as_zero(problem, method):
    scores, ideals, weights = problem
    with_nan = torch.cat([scores, torch.full((scores.shape[0], 1), NAN, dtype=torch.float64)], dim=1)
    kw = {"weights": weights, "ideals": ideals}
    kw_nan = {"weights": torch.cat([weights, t([3.0])]), "ideals": torch.cat([ideals, t([7.0])])}
    torch.testing.assert_close(aggregate(method, with_nan, **kw_nan), aggregate(method, scores, **kw))
