import itertools
import random

import pytest

from moalign.eval.pareto import dominates, hypervolume, pareto_front, pareto_mask


def test_dominated_points_are_excluded_and_duplicates_kept_once():
    points = [(1, 3), (2, 2), (1, 1), (3, 1), (2, 2), (0, 3), (2, 1.5)]
    # (1,1) is dominated by (2,2); (0,3) by (1,3); (2,1.5) by (2,2); the second (2,2) is a duplicate
    assert pareto_mask(points) == [True, True, False, True, False, False, False]
    assert pareto_front(points) == [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]


def test_equal_points_do_not_dominate_each_other():
    assert not dominates((1, 1), (1, 1))
    assert dominates((1, 2), (1, 1)) and not dominates((1, 1), (1, 2))


def test_hypervolume_2d_worked_by_hand():
    # boxes from (0,0): to (1,3), (2,2), (3,1); union = 3 + (2*2 - 1*2) + (3*1 - 2*1) = 3 + 2 + 1 = 6
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == pytest.approx(6.0)
    # reference (1, 0.5): (1,3) adds nothing on the first axis; (2,2): 1*1.5, (3,1): + 1*0.5 -> 2.0
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (1, 0.5)) == pytest.approx(2.0)
    # a dominated point adds nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (1, 1)], (0, 0)) == pytest.approx(6.0)
    assert hypervolume([], (0, 0)) == 0.0


def test_hypervolume_3d_worked_by_hand():
    # two boxes from the origin: [0,2]x[0,1]x[0,1] (volume 2) and [0,1]x[0,2]x[0,1] (volume 2),
    # overlapping in [0,1]^3 (volume 1): union 3; a third point (1,1,2) adds [0,1]x[0,1]x[1,2]: 1 more
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == pytest.approx(3.0)
    assert hypervolume([(2, 1, 1), (1, 2, 1), (1, 1, 2)], (0, 0, 0)) == pytest.approx(4.0)


def _grid_volume(points, reference, steps=8):
    """The dominated volume by counting cells of a grid on [reference, 1]^d (coordinates on the grid)."""
    d = len(reference)
    cell = [(1 - r) / steps for r in reference]
    inside = 0
    for idx in itertools.product(range(steps), repeat=d):
        centre = [r + (i + 0.5) * c for r, i, c in zip(reference, idx, cell, strict=True)]
        inside += any(all(p[k] >= centre[k] for k in range(d)) for p in points)
    volume = 1.0
    for c in cell:
        volume *= c
    return inside * volume


def test_hypervolume_matches_grid_counting_on_random_3d_fronts():
    rng = random.Random(0)
    for _ in range(5):
        points = [tuple(rng.randint(1, 8) / 8 for _ in range(3)) for _ in range(6)]
        assert hypervolume(points, (0, 0, 0)) == pytest.approx(_grid_volume(points, (0, 0, 0)))
