import math

import torch

from moalign.losses.preference import dpo_loss


def test_dpo_loss_by_hand():
    losses, chosen, rejected = dpo_loss(
        torch.tensor([-1.0, -3.0]),
        torch.tensor([-2.0, -1.0]),
        torch.tensor([-1.5, -2.0]),
        torch.tensor([-1.5, -2.0]),
        beta=0.5,
    )
    # pair 0: rewards 0.5*(-1+1.5)=0.25 and 0.5*(-2+1.5)=-0.25 -> -log sigma(0.5)
    # pair 1: rewards 0.5*(-3+2)=-0.5 and 0.5*(-1+2)=0.5 -> -log sigma(-1)
    assert torch.allclose(chosen, torch.tensor([0.25, -0.5]))
    assert torch.allclose(rejected, torch.tensor([-0.25, 0.5]))
    expected = torch.tensor([math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(1.0))])
    assert torch.allclose(losses, expected, atol=1e-6)


def test_dpo_loss_is_log2_when_policy_equals_reference():
    x = torch.randn(5)
    losses, _, _ = dpo_loss(x, x + 1, x, x + 1, beta=0.1)
    assert torch.allclose(losses, torch.full((5,), math.log(2.0)))
