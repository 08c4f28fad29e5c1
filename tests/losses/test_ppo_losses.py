import math

import pytest
import torch

from moalign.losses.advantages import gae_advantages, group_advantages, leave_one_out_advantages
from moalign.losses.ppo import (
    clipped_surrogate_loss,
    clipped_value_loss,
    kl_estimate,
    kl_penalised_rewards,
    masked_mean,
    masked_whiten,
    token_entropy,
)
from moalign.losses.preference import best_worst_pairs

NAN = float("nan")


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 6.0]])  # mean 3, sample std sqrt(((-2)^2 + 1 + 9) / 2) = sqrt(7)
    assert group_advantages(r).tolist() == [[-2.0, -1.0, 3.0]]
    expected = [v / (math.sqrt(7.0) + 1e-4) for v in (-2.0, -1.0, 3.0)]
    assert group_advantages(r, scale=True)[0].tolist() == pytest.approx(expected)
    # leave-one-out: 1 - 4 = -3, 2 - 3.5 = -1.5, 6 - 1.5 = 4.5 = 3/2 * group advantage
    assert leave_one_out_advantages(r).tolist() == [[-3.0, -1.5, 4.5]]


def test_gae_by_hand_with_a_prompt_position_and_padding():
    # one row: position 0 is prompt, 1-2 are the completion, 3 is padding
    mask = torch.tensor([[0, 1, 1, 0]])
    rewards = torch.tensor([[9.0, 0.5, 1.0, 9.0]])
    values = torch.tensor([[9.0, 0.2, 0.4, 9.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=2: delta = 1 + 0.9 * 0 - 0.4 = 0.6 (the value after the last token is 0), A = 0.6
    # t=1: delta = 0.5 + 0.9 * 0.4 - 0.2 = 0.66, A = 0.66 + 0.9 * 0.5 * 0.6 = 0.93
    assert adv[0].tolist() == pytest.approx([0.0, 0.93, 0.6, 0.0])
    assert ret[0].tolist() == pytest.approx([0.0, 1.13, 1.0, 0.0])


def test_gae_matches_a_plain_loop_on_full_rows():
    torch.manual_seed(0)
    r, v = torch.randn(3, 5), torch.randn(3, 5)
    adv, _ = gae_advantages(r, v, torch.ones(3, 5), gamma=0.95, lam=0.9)
    for n in range(3):
        for t in range(5):
            expected = 0.0
            for l_ in range(5 - t):
                nxt = v[n, t + l_ + 1] if t + l_ + 1 < 5 else 0.0
                expected += (0.95 * 0.9) ** l_ * (r[n, t + l_] + 0.95 * nxt - v[n, t + l_])
            assert adv[n, t].item() == pytest.approx(float(expected), abs=1e-5)


def test_clipped_surrogate_by_hand():
    logps = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1 against old log-prob 0
    old = torch.zeros(1, 3)
    adv = torch.tensor([[2.0, 2.0, -1.0]])
    mask = torch.ones(1, 3)
    loss, frac = clipped_surrogate_loss(logps, old, adv, mask, clip=0.2)
    # min(1.5*2, 1.2*2) = 2.4 (clipped); min(0.5*2, 0.8*2) = 1.0; min(1.1*-1, 1.1*-1) = -1.1
    assert loss.item() == pytest.approx(-(2.4 + 1.0 - 1.1) / 3)
    assert frac.item() == pytest.approx(1 / 3)


def test_clipped_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.0]])
    returns = torch.tensor([[0.0, 2.0]])
    mask = torch.tensor([[1, 0]])  # only the first token counts
    # V = 1 is clipped to 0.5 + 0.2 = 0.7: max(1^2, 0.7^2) = 1; 0.5 * 1
    assert clipped_value_loss(values, old, returns, mask, clip=0.2).item() == pytest.approx(0.5)
    returns = torch.tensor([[2.0, 0.0]])  # now the clipped value is further: max(1, 1.3^2) = 1.69
    assert clipped_value_loss(values, old, returns, mask, clip=0.2).item() == pytest.approx(0.5 * 1.69)


def test_kl_estimators_and_penalised_rewards_by_hand():
    logps, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    assert kl_estimate(logps, ref, "k1")[0].tolist() == pytest.approx([0.5, -1.0])
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    assert kl_estimate(logps, ref, "k3")[0].tolist() == pytest.approx(k3)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    lp = torch.tensor([[-1.0, -2.0, 0.0], [0.0, -1.0, -1.0]])
    rp = torch.tensor([[-1.5, -1.0, 0.0], [0.0, -1.0, -2.0]])
    got = kl_penalised_rewards(torch.tensor([3.0, -1.0]), lp, rp, mask, beta=0.1)
    # row 0: -0.1 * 0.5, -0.1 * -1 + 3 (last completion token); row 1: 0, -0.1 * 1 - 1
    assert got.flatten().tolist() == pytest.approx([-0.05, 3.1, 0.0, 0.0, 0.0, -1.1])


def test_masked_statistics_and_entropy():
    x, mask = torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1, 1, 0])
    assert masked_mean(x, mask).item() == 2.0
    assert masked_whiten(x, mask).tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-6)
    uniform = torch.zeros(1, 1, 4)
    assert token_entropy(uniform).item() == pytest.approx(math.log(4))
    # uniform over 4 tokens: ln 4; one-hot-like: ~0; chunked one position at a time, shape kept
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    assert token_entropy(logits, chunk=1).tolist() == [pytest.approx([math.log(4), 0.0], abs=1e-6)]


def test_best_worst_pairs_skip_ties_and_unscored():
    rewards = torch.tensor([[0.1, 0.9, 0.5], [NAN, 0.3, NAN], [0.2, 0.2, 0.2], [NAN, 1.0, 0.0]])
    chosen, rejected, valid = best_worst_pairs(rewards)
    assert chosen[0] == 1 and rejected[0] == 0 and chosen[3] == 1 and rejected[3] == 2
    assert valid.tolist() == [True, False, False, True]


def test_group_advantages_leave_nan_rewards_out_of_the_group():
    nan = float("nan")
    got = group_advantages(torch.tensor([[1.0, nan, 5.0], [2.0, nan, nan]]))
    assert got[0, 0].item() == -2.0 and got[0, 2].item() == 2.0 and got[1, 0].item() == 0.0
    assert math.isnan(got[0, 1].item()) and math.isnan(got[1, 1].item())
    scaled = group_advantages(torch.tensor([[1.0, nan, 5.0]]), scale=True)  # std of (1, 5): 2 * sqrt(2)
    assert scaled[0, 2].item() == pytest.approx(2.0 / (math.sqrt(8.0) + 1e-4))


def test_the_advantage_registry_names_each_group_estimator():
    from moalign.losses.advantages import ADVANTAGES, centred_rewards

    assert ADVANTAGES.names() == ["group", "leave_one_out", "mean", "none"]
    r = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    assert torch.equal(centred_rewards(r, "none"), r)
    assert torch.allclose(centred_rewards(r, "mean"), r - 2.0)
    assert torch.allclose(centred_rewards(r, "leave_one_out"), 1.5 * centred_rewards(r, "group"))
