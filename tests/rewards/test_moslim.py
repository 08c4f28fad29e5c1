import json
import math

import pytest
import torch

from moalign.rewards import MoslimMapper

NAN = float("nan")


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_mapper_by_hand():
    mapper = MoslimMapper(["helpfulness", "honesty"])
    p = t([[0.2, NAN], [0.6, 0.5]])
    levels = torch.tensor([[4, 0], [4, 2]])
    r = mapper(p, levels)
    # helpfulness@4 sees [0.2, 0.6]: mean 0.4, population std 0.2 -> z = [-1, 1]
    # honesty@2 sees [0.5] once: std 0 -> z = 0; k = "all" divides by 2 dimensions
    torch.testing.assert_close(r, t([-0.5, 0.5]))
    assert mapper.stats[("helpfulness", 4)] == pytest.approx([2, 0.4, 0.04])
    assert mapper.stats[("honesty", 2)] == pytest.approx([1, 0.5, 0.0])

    active = MoslimMapper(["helpfulness", "honesty"], k="active")
    torch.testing.assert_close(active(p, levels), t([-1.0, 0.5]))


def test_statistics_are_kept_per_dimension_and_intensity():
    mapper = MoslimMapper(["helpfulness"])
    p = t([[0.1], [0.3], [0.8], [0.9]])
    levels = torch.tensor([[1], [1], [5], [5]])
    r = mapper(p, levels)
    # intensity 1: [0.1, 0.3] -> z = [-1, 1]; intensity 5: [0.8, 0.9] -> z = [-1, 1]
    torch.testing.assert_close(r, t([-1.0, 1.0, -1.0, 1.0]))
    assert set(mapper.stats) == {("helpfulness", 1), ("helpfulness", 5)}


def test_mask_excludes_entries_from_reward_and_statistics():
    mapper = MoslimMapper(["a", "b"])
    p = t([[0.2, 0.9], [0.6, 0.1]])
    levels = torch.tensor([[1, 1], [1, 1]])
    mask = torch.tensor([[True, False], [True, False]])
    torch.testing.assert_close(mapper(p, levels, mask), t([-0.5, 0.5]))
    assert ("b", 1) not in mapper.stats


def test_cumulative_statistics_equal_the_statistics_of_all_data():
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(60, 1, generator=gen, dtype=torch.float64)
    levels = torch.randint(1, 4, (60, 1), generator=gen)
    mapper = MoslimMapper(["d"])
    for start in range(0, 60, 7):
        mapper.update(p[start : start + 7], levels[start : start + 7])
    for level in (1, 2, 3):
        values = p[levels == level]
        count, mean, var = mapper.stats[("d", level)]
        assert count == values.numel()
        assert mean == pytest.approx(values.mean().item())
        assert var == pytest.approx(values.var(correction=0).item())


def test_exponential_moving_average_by_hand():
    mapper = MoslimMapper(["d"], momentum=0.5)
    mapper.update(t([[0.2]]), torch.tensor([[1]]))
    mapper.update(t([[0.6]]), torch.tensor([[1]]))
    # delta = 0.4: mean = 0.2 + 0.5*0.4 = 0.4; var = (1-0.5)*(0 + 0.5*0.16) + 0.5*0 = 0.04
    _, mean, var = mapper.stats[("d", 1)]
    assert (mean, var) == pytest.approx((0.4, 0.04))


def test_evaluation_does_not_update_and_needs_seen_keys():
    mapper = MoslimMapper(["d"])
    mapper(t([[0.2], [0.6]]), torch.tensor([[2], [2]]))
    before = json.dumps(mapper.state_dict())
    r = mapper(t([[0.8]]), torch.tensor([[2]]), update=False)
    torch.testing.assert_close(r, t([(0.8 - 0.4) / 0.2]))
    assert json.dumps(mapper.state_dict()) == before
    with pytest.raises(ValueError, match="no statistics yet for dimension 'd' intensity 3"):
        mapper(t([[0.8]]), torch.tensor([[3]]), update=False)


def test_resumed_mapper_continues_exactly():
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.rand(8, 2, generator=gen, dtype=torch.float64), torch.randint(1, 3, (8, 2), generator=gen))
        for _ in range(4)
    ]
    for momentum in (None, 0.1):
        straight = MoslimMapper(["a", "b"], momentum=momentum, k="active")
        out_straight = [straight(p, lv) for p, lv in batches]
        first = MoslimMapper(["a", "b"], momentum=momentum, k="active")
        for p, lv in batches[:2]:
            first(p, lv)
        saved = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
        resumed = MoslimMapper(["a", "b"])
        resumed.load_state_dict(saved)
        assert resumed.k == "active" and resumed.momentum == momentum
        for (p, lv), expected in zip(batches[2:], out_straight[2:], strict=True):
            torch.testing.assert_close(resumed(p, lv), expected)


def test_mapper_errors():
    with pytest.raises(ValueError, match="distinct and non-empty"):
        MoslimMapper(["a", "a"])
    with pytest.raises(ValueError, match="momentum"):
        MoslimMapper(["a"], momentum=0.0)
    mapper = MoslimMapper(["a", "b"])
    with pytest.raises(ValueError, match=r"p_target must be \[B, 2\]"):
        mapper(t([[0.1]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="saved dimensions"):
        MoslimMapper(["x", "y"]).load_state_dict(mapper.state_dict())
    assert math.isnan(mapper(t([[NAN, NAN]]), torch.tensor([[0, 0]])).item())
