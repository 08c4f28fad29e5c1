import math

import pytest
import torch
import torch.nn.functional as F

from moalign.losses.multihead import joint_softmax_cross_entropy, multihead_cross_entropy

LN2, LN3 = math.log(2), math.log(3)


def tiny_example():
    """Two samples, head A with 3 classes, head B with 2; sample 1 has no B label.

    Sample 0: z_A = [0, ln2, 0] -> S_A = [1/4, 1/2, 1/4]; z_B = [0, 0] -> S_B = [1/2, 1/2].
    Sample 1: z_A = [ln3, 0, 0] -> S_A = [3/5, 1/5, 1/5]; z_B = [0, 0].
    """
    logits = {
        "A": torch.tensor([[0.0, LN2, 0.0], [LN3, 0.0, 0.0]]),
        "B": torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
    }
    labels = torch.tensor([[1, 0], [0, -100]])
    return logits, labels


def test_per_head_loss_equals_hand_computation_with_a_masked_head():
    logits, labels = tiny_example()
    # eq. 9 per head: sample 0: -ln(1/2) (A) - ln(1/2) (B); sample 1: -ln(3/5) (A), B masked
    expected = (LN2 + LN2 + math.log(5 / 3)) / 2
    assert multihead_cross_entropy(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_mask_argument_list_input_and_missing_marker_agree():
    logits, labels = tiny_example()
    mask = torch.tensor([[True, True], [True, False]])
    a = multihead_cross_entropy(logits, labels, mask)
    b = multihead_cross_entropy([logits["A"], logits["B"]], labels.clamp(min=0), mask)
    c = multihead_cross_entropy(logits, labels)
    assert a.item() == pytest.approx(c.item()) and b.item() == pytest.approx(c.item())


def test_masked_head_gets_no_gradient_and_does_not_change_the_loss():
    logits, labels = tiny_example()
    z_b = logits["B"].clone().requires_grad_(True)
    loss = multihead_cross_entropy({"A": logits["A"], "B": z_b}, labels)
    loss.backward()
    assert torch.all(z_b.grad[1] == 0) and torch.any(z_b.grad[0] != 0)
    moved = {"A": logits["A"], "B": torch.tensor([[0.0, 0.0], [9.0, -9.0]])}
    assert multihead_cross_entropy(moved, labels).item() == pytest.approx(loss.item())


def test_per_head_loss_matches_a_plain_loop():
    torch.manual_seed(0)
    sizes = [5, 3, 2]
    logits = [torch.randn(7, k) for k in sizes]
    labels = torch.stack([torch.randint(0, k, (7,)) for k in sizes], dim=1)
    mask = torch.rand(7, 3) > 0.3
    total = 0.0
    for b in range(7):
        for h in range(3):
            if mask[b, h]:
                total += F.cross_entropy(logits[h][b : b + 1], labels[b, h : h + 1]).item()
    assert multihead_cross_entropy(logits, labels, mask).item() == pytest.approx(total / 7, abs=1e-5)


def test_sample_without_labels_contributes_zero():
    logits = {"A": torch.randn(2, 3)}
    labels = torch.tensor([[2], [-100]])
    alone = F.cross_entropy(logits["A"][:1], labels[:1, 0]).item()
    assert multihead_cross_entropy(logits, labels).item() == pytest.approx(alone / 2, abs=1e-6)


def test_joint_softmax_equals_hand_computation_of_eq10():
    logits, labels = tiny_example()
    # one softmax over [z_A || z_B]: sample 0: exp-sum 1+2+1+1+1 = 6 -> -ln(2/6) (A=1) - ln(1/6) (B=0)
    # sample 1: exp-sum 3+1+1+1+1 = 7 -> -ln(3/7) (A=0), B masked
    expected = (LN3 + math.log(6) + math.log(7 / 3)) / 2
    assert joint_softmax_cross_entropy(logits, labels).item() == pytest.approx(expected, abs=1e-6)
