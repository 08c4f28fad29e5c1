"""Pareto fronts and hypervolume of multi-objective results (every objective maximised).

A point is a tuple of per-objective scores. Point ``q`` *dominates* ``p`` when ``q >= p`` on every
objective and ``q > p`` on at least one. The front is the set of points no other point dominates.
The hypervolume of a front with respect to a reference point ``r`` is the measure of the union of the
boxes ``[r, p]`` over the front's points (the area in 2-D): larger means a front that reaches further
in more directions. Coordinates at or below the reference add nothing (the box is empty).
"""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]


def dominates(q: Point, p: Point) -> bool:
    """``q`` is at least as good as ``p`` on every objective and better on one (maximisation)."""
    return all(a >= b for a, b in zip(q, p, strict=True)) and any(a > b for a, b in zip(q, p, strict=True))


def pareto_mask(points: Sequence[Point]) -> list[bool]:
    """For each point: True if no other point dominates it. Of equal points only the first is marked."""
    keys = [tuple(float(x) for x in p) for p in points]
    mask = []
    for i, p in enumerate(keys):
        first = keys.index(p) == i
        mask.append(first and not any(dominates(q, p) for q in keys))
    return mask


def pareto_front(points: Sequence[Point]) -> list[tuple[float, ...]]:
    """The non-dominated points, each once, sorted by the first objective (then the next ones)."""
    return sorted(tuple(float(x) for x in p) for p, keep in zip(points, pareto_mask(points), strict=True) if keep)


def hypervolume(front: Sequence[Point], reference: Point) -> float:
    """Exact hypervolume dominated by ``front`` above ``reference`` (maximisation), any dimension.

    Slicing along the last objective: with its distinct values ``v_1 > v_2 > ... > v_m`` above the
    reference and ``v_{m+1} = r_last``, ``HV_d = sum_j (v_j - v_{j+1}) * HV_{d-1}({p[:-1] : p_last >= v_j})``;
    in 1-D it is ``max(p) - r``. In 2-D this is the usual sweep over the front sorted by one objective.
    The cost is ``O(n^d)``, fine for the small fronts of a weight sweep. ``front`` may hold dominated
    points (they add nothing).
    """
    ref = tuple(float(x) for x in reference)
    pts = [tuple(float(x) for x in p) for p in front]
    if any(len(p) != len(ref) for p in pts):
        raise ValueError(f"every point needs {len(ref)} coordinates, like the reference")
    pts = [p for p in pts if all(a > r for a, r in zip(p, ref, strict=True))]
    return _slice_volume(pts, ref)


def _slice_volume(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not pts:
        return 0.0
    if len(ref) == 1:
        return max(p[0] for p in pts) - ref[0]
    levels = sorted({p[-1] for p in pts}, reverse=True) + [ref[-1]]
    volume = 0.0
    for top, bottom in zip(levels, levels[1:], strict=False):
        above = [p[:-1] for p in pts if p[-1] >= top]
        volume += (top - bottom) * _slice_volume(above, ref[:-1])
    return volume
