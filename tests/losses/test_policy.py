import math

import pytest
import torch

from moalign.losses.advantages import centred_rewards, leave_one_out_advantages
from moalign.losses.policy import reward_weighted_nll

NAN = float("nan")


def test_reward_weighted_nll_by_hand():
    logps = torch.tensor([[-1.0, -2.0]])
    rewards = torch.tensor([[1.0, 3.0]])
    # literal seed 000: -(1 * -1 + 3 * -2) / 2
    assert reward_weighted_nll(logps, rewards, "none").item() == pytest.approx(3.5)
    # mean baseline 2: weights [-1, 1] -> -((-1)(-1) + (1)(-2)) / 2
    assert reward_weighted_nll(logps, rewards, "mean").item() == pytest.approx(0.5)
    # leave-one-out: weights [1 - 3, 3 - 1] -> -((-2)(-1) + (2)(-2)) / 2
    assert reward_weighted_nll(logps, rewards, "leave_one_out").item() == pytest.approx(1.0)


def test_all_negative_rewards_without_baseline_push_every_sample_down():
    logps = torch.zeros(1, 3, requires_grad=True)
    reward_weighted_nll(logps, torch.tensor([[-3.0, -2.0, -1.0]]), "none").backward()
    assert bool((logps.grad > 0).all())  # descent lowers every log-prob
    logps.grad = None
    reward_weighted_nll(logps, torch.tensor([[-3.0, -2.0, -1.0]]), "leave_one_out").backward()
    assert logps.grad[0, 0] > 0 > logps.grad[0, 2]  # the best sample is raised, the worst lowered


def test_leave_one_out_matches_the_advantage_function_and_skips_nan():
    r = torch.randn(3, 4)
    assert torch.allclose(centred_rewards(r, "leave_one_out"), leave_one_out_advantages(r))
    got = centred_rewards(torch.tensor([[1.0, NAN, 5.0], [2.0, NAN, NAN]]), "leave_one_out")
    assert got[0, 0].item() == -4.0 and got[0, 2].item() == 4.0
    assert math.isnan(got[0, 1].item()) and bool(torch.isnan(got[1]).all())  # no valid peer: no weight


def test_nan_rewards_carry_no_weight():
    logps = torch.tensor([[-1.0, -5.0]], requires_grad=True)
    loss = reward_weighted_nll(logps, torch.tensor([[2.0, NAN]]), "none")
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert logps.grad[0, 1].item() == 0.0
