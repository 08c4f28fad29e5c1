import torch

from moalign.losses.advantages import leave_one_out_advantages
from moalign.losses.length_penalty import length_penalty, length_penalty_surrogate


def test_length_penalty_by_hand():
    # seed 004 eq. 3: coef * max(0, |y| - |y_ref|)^2
    got = length_penalty(torch.tensor([[5, 2, 3], [10, 1, 4]]), torch.tensor([3, 4]), coef=0.5)
    assert torch.equal(got, torch.tensor([[0.5 * 2**2, 0.0, 0.0], [0.5 * 6**2, 0.0, 0.0]]))


def test_leave_one_out_by_hand_and_against_a_loop():
    rewards = torch.tensor([[1.0, 3.0, 5.0]])
    assert torch.allclose(leave_one_out_advantages(rewards), torch.tensor([[1 - 4.0, 3 - 3.0, 5 - 2.0]]))
    r = torch.randn(4, 5)
    loop = torch.stack(
        [torch.stack([r[b, i] - torch.cat([r[b, :i], r[b, i + 1 :]]).mean() for i in range(5)]) for b in range(4)]
    )
    assert torch.allclose(leave_one_out_advantages(r), loop, atol=1e-6)


def test_surrogate_gradient_pushes_down_the_longer_sample():
    logps = torch.zeros(1, 2, requires_grad=True)
    penalties = torch.tensor([[4.0, 0.0]])  # sample 0 overshoots the reference
    length_penalty_surrogate(penalties, logps).backward()
    # loss gradient: + for the penalised sample (descent lowers its log-prob), - for the other
    assert logps.grad[0, 0] > 0 > logps.grad[0, 1]
    # leave-one-out: A = [4 - 0, 0 - 4] / (B*k=2)
    assert torch.allclose(logps.grad, torch.tensor([[2.0, -2.0]]))


def test_single_sample_uses_batch_mean_baseline():
    logps = torch.zeros(2, 1, requires_grad=True)
    length_penalty_surrogate(torch.tensor([[3.0], [1.0]]), logps).backward()
    assert torch.allclose(logps.grad, torch.tensor([[0.5], [-0.5]]))


def test_surrogate_value_is_the_mean_penalty_whatever_the_log_probs():
    # the logged loss must be eq. 3's L, not centred * logp (hundreds of nats, either sign)
    logps = torch.tensor([[-250.0, -40.0], [-90.0, -300.0]], requires_grad=True)
    penalties = torch.tensor([[4.0, 0.0], [1.0, 9.0]])
    assert length_penalty_surrogate(penalties, logps).item() == 3.5
