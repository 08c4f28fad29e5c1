"""Aggregators: pure functions that turn a ``[B, k]`` score matrix into one reward per sample.

Shared conventions: NaN in ``scores``, or False in the optional ``[B, k]`` bool ``mask``, means "does not
apply"; such inactive entries are left out of the aggregate (never counted as 0); a row with no active entry
gets NaN, for the caller to handle; ``weights`` and ``ideals`` are length-k, weights default to 1.
The stateful MOSLIM mapping (seed 002, eq. 11) keeps moving statistics; its pure core is
:func:`moslim_reward` and :class:`moalign.rewards.MoslimMapper` holds the state.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field

from moalign.config.base import StrictModel
from moalign.registry import Registry

Vector = Sequence[float] | torch.Tensor


def active_entries(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, k]`` bool: not NaN and (if given) masked in."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, k], got shape {tuple(scores.shape)}")
    active = ~torch.isnan(scores)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match scores {tuple(scores.shape)}")
        active = active & mask.bool()
    return active


def _vector(values: Vector | None, k: int, like: torch.Tensor, what: str, default: float | None) -> torch.Tensor:
    if values is None:
        if default is None:
            raise ValueError(f"this aggregator needs {what} (one per objective)")
        return torch.full((k,), default, dtype=like.dtype, device=like.device)
    out = torch.as_tensor(values, dtype=like.dtype, device=like.device).flatten()
    if out.numel() != k:
        raise ValueError(f"{what} has {out.numel()} values for {k} objectives")
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} must be finite, got {out.tolist()}")
    return out


def _float(scores: torch.Tensor) -> torch.Tensor:
    return scores if scores.is_floating_point() else scores.double()


def _nan_where_empty(reward: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    return torch.where(active.any(dim=1), reward, torch.full_like(reward, float("nan")))


def _nonnegative(weights: torch.Tensor) -> torch.Tensor:
    if (weights < 0).any():
        raise ValueError(f"distance-based aggregators need non-negative weights, got {weights.tolist()}")
    return weights


def weighted_sum(scores: torch.Tensor, weights: Vector | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``r = sum_i w_i s_i`` over active entries: the MORLHF scalarisation (seed 002, eq. 1).

    Shapes: scores ``[B, k]``, weights ``[k]``, mask ``[B, k]`` -> ``[B]``. Inactive entries drop out
    of the sum (the weights are not renormalised); a row with none is NaN. Linear in ``scores``
    and in ``weights``.
    """
    scores = _float(scores)
    active = active_entries(scores, mask)
    w = _vector(weights, scores.shape[1], scores, "weights", 1.0)
    terms = torch.where(active, w * scores, torch.zeros_like(scores))
    return _nan_where_empty(terms.sum(dim=1), active)


def weighted_gaps(
    scores: torch.Tensor, ideals: Vector | None, weights: Vector | None, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_i |s_i - ideal_i|`` as ``[B, k]``, active ``[B, k]``); the effective gaps of seed 000, 3.3."""
    scores = _float(scores)
    active = active_entries(scores, mask)
    k = scores.shape[1]
    w = _nonnegative(_vector(weights, k, scores, "weights", 1.0))
    ideal = _vector(ideals, k, scores, "ideals", None)
    return w * (scores - ideal).abs(), active


def gap_to_ideal(
    scores: torch.Tensor, ideals: Vector | None, weights: Vector | None = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``r = -sum_i w_i |s_i - ideal_i|`` over active entries (seed 000, section 3.3).

    Shapes: scores ``[B, k]``, ideals and weights ``[k]`` (weights >= 0), mask ``[B, k]`` -> ``[B]``.
    Exactly 0 where every active score equals its ideal, negative elsewhere (for positive weights).
    """
    gaps, active = weighted_gaps(scores, ideals, weights, mask)
    return _nan_where_empty(-torch.where(active, gaps, torch.zeros_like(gaps)).sum(dim=1), active)


def chebyshev(
    scores: torch.Tensor, ideals: Vector | None, weights: Vector | None = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``r = -max_i w_i |s_i - ideal_i|`` over active entries: the weighted Chebyshev scalarisation.

    Shapes as :func:`gap_to_ideal`. Only the worst objective counts, so improving any other one
    leaves the reward unchanged; this targets balanced solutions, including non-convex parts of a
    Pareto front that weighted sums cannot reach.
    """
    gaps, active = weighted_gaps(scores, ideals, weights, mask)
    worst = torch.where(active, gaps, torch.full_like(gaps, float("-inf"))).amax(dim=1)
    return _nan_where_empty(-worst, active)


def soft_chebyshev(
    scores: torch.Tensor,
    ideals: Vector | None,
    weights: Vector | None = None,
    mask: torch.Tensor | None = None,
    tau: float = 1.0,
) -> torch.Tensor:
    """``r = -tau * log sum_i exp(w_i |s_i - ideal_i| / tau)`` over active entries.

    The smooth Chebyshev variant that seed 000 (section 3.3) proposed and then dropped for the
    plain gap sum. Shapes as :func:`gap_to_ideal`; ``tau > 0``. Bounds:
    ``chebyshev - tau * log(m) <= soft_chebyshev <= chebyshev`` with m the number of active
    entries, so it tends to :func:`chebyshev` as ``tau -> 0``; it equals it when one entry is active.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    gaps, active = weighted_gaps(scores, ideals, weights, mask)
    scaled = torch.where(active, gaps / tau, torch.full_like(gaps, float("-inf")))
    return _nan_where_empty(-tau * torch.logsumexp(scaled, dim=1), active)


def group_ids(groups: Sequence[Hashable] | torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor:
    """``[B]`` long ids ``0..G-1`` in order of first appearance; one group when ``groups`` is None."""
    if groups is None:
        return torch.zeros(size, dtype=torch.long, device=device)
    keys = groups.tolist() if isinstance(groups, torch.Tensor) else list(groups)
    if len(keys) != size:
        raise ValueError(f"groups has {len(keys)} entries for {size} samples")
    index: dict[Hashable, int] = {}
    return torch.tensor([index.setdefault(key, len(index)) for key in keys], dtype=torch.long, device=device)


def group_zscore(
    scores: torch.Tensor,
    groups: Sequence[Hashable] | torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Each objective z-scored within each group: ``z = (s - mean_g) / max(std_g, eps)``.

    Shapes: scores ``[B, k]``, groups ``[B]`` (any hashable labels, e.g. the prompt; None = the
    whole batch is one group), mask ``[B, k]`` -> ``[B, k]``. Mean and std are taken over the
    group's active entries of that objective; std is the population std (divisor n, not n - 1), so
    a group ``[1, 3]`` gives ``[-1, 1]``. A group whose entries are all equal gives 0; inactive
    entries stay NaN.
    """
    scores = _float(scores)
    active = active_entries(scores, mask)
    ids = group_ids(groups, scores.shape[0], scores.device)
    n_groups = int(ids.max()) + 1 if ids.numel() else 0
    zeros = torch.zeros(n_groups, scores.shape[1], dtype=scores.dtype, device=scores.device)
    values = torch.where(active, scores, torch.zeros_like(scores))
    count = zeros.index_add(0, ids, active.to(scores.dtype)).clamp_min(1)
    mean = zeros.index_add(0, ids, values) / count
    dev = torch.where(active, scores - mean[ids], torch.zeros_like(scores))
    std = (zeros.index_add(0, ids, dev**2) / count).sqrt()
    z = dev / std.clamp_min(eps)[ids]
    return torch.where(active, z, torch.full_like(z, float("nan")))


def normalize_then_sum(
    scores: torch.Tensor,
    weights: Vector | None = None,
    mask: torch.Tensor | None = None,
    groups: Sequence[Hashable] | torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``r = sum_i w_i z_i`` with ``z_i`` objective i z-scored within the sample's prompt group.

    Shapes: scores ``[B, k]``, weights ``[k]``, mask ``[B, k]``, groups ``[B]`` -> ``[B]``. See
    :func:`group_zscore` for the normalisation. Puts objectives on different scales on an equal
    footing before weighting them (TRL offers only the per-group normalisation of the *sum*).
    """
    return weighted_sum(group_zscore(scores, groups, mask, eps), weights)


MoslimK = Literal["all", "active"]


def moslim_reward(
    p_target: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    mask: torch.Tensor | None = None,
    k: MoslimK = "all",
    eps: float = 1e-6,
) -> torch.Tensor:
    """MOSLIM reward mapping (seed 002, eq. 11): ``r = (1/K) sum_i mask_i (p_i - mean_i) / std_i``.

    Shapes: ``p_target``, ``mean``, ``std`` and ``mask`` are ``[B, k]`` -> ``[B]``. ``p_target[b, i]``
    is the reward model's probability of the intensity that sample b's tag asks for in dimension i;
    ``mean``/``std`` are the moving statistics of that (dimension, intensity), already gathered per
    entry; ``std`` is floored at ``eps``. ``mask_i`` is 1 only for dimensions the prompt's tags name.

    K, where the paper is ambiguous: its text defines k as "the total number of preference
    dimensions" while the sum runs over masked terms (and is written ``i = 0..k``, k + 1 terms,
    which we read as a typo for the k dimensions). We follow the text: ``k="all"`` divides by the
    number of dimensions (columns). ``k="active"`` divides by the number of tagged dimensions of
    each row instead, i.e. the mean z-score, which keeps a one-tag prompt's reward on the same
    scale as a three-tag prompt's. All completions of one prompt share its tags, so the choice only
    rescales each prompt's rewards by a constant: it cancels under per-group std-normalised
    advantages (GRPO) but changes the weight of few-tag prompts under PPO or RLOO.
    """
    if k not in ("all", "active"):
        raise ValueError(f"k must be 'all' or 'active', got {k!r}")
    p_target = _float(p_target)
    active = active_entries(p_target, mask)
    z = (p_target - mean) / std.clamp_min(eps)
    total = torch.where(active, z, torch.zeros_like(z)).sum(dim=1)
    denom = active.sum(dim=1).clamp_min(1) if k == "active" else p_target.shape[1]
    return _nan_where_empty(total / denom, active)


# --- the aggregator registry: names and typed configs for recipes ------------------------------


class NoConfig(StrictModel):
    """This aggregator takes no parameters."""


class SoftChebyshevConfig(StrictModel):
    tau: float = Field(1.0, gt=0)
    """Temperature; smaller is closer to ``chebyshev``."""


class NormalizeThenSumConfig(StrictModel):
    eps: float = Field(1e-6, gt=0)
    """Floor of the per-group std."""


class MoslimConfig(StrictModel):
    k: MoslimK = "all"
    """Divide by all dimensions (the paper's text) or by the prompt's tagged ones."""
    momentum: float | None = Field(None, gt=0, le=1)
    """None: cumulative statistics over everything seen; else exponential moving average rate."""
    eps: float = Field(1e-6, gt=0)
    """Floor of the std."""


Groups = Sequence[Hashable] | torch.Tensor
AggregatorReward = Callable[
    [torch.Tensor, Vector | None, Vector | None, torch.Tensor | None, Groups | None, Any], torch.Tensor
]
"""``reward(scores, weights, ideals, mask, groups, config) -> [B]``: a stateless aggregator applied with its typed
config (each takes the inputs it needs and ignores the rest)."""


@dataclass(frozen=True)
class AggregatorDef:
    name: str
    config_cls: type[StrictModel]
    reward: AggregatorReward | None
    """None for an aggregator that keeps state (MOSLIM: :class:`moalign.rewards.MoslimMapper`)."""
    needs_ideals: bool = False
    needs_tags: bool = False
    """Every objective must name a tag dimension (the stateful MOSLIM mapping)."""


AGGREGATORS: Registry[AggregatorDef] = Registry("aggregator")
for _def in (  # reward(s: scores, w: weights, i: ideals, m: mask, g: groups, c: config)
    AggregatorDef("weighted_sum", NoConfig, lambda s, w, i, m, g, c: weighted_sum(s, w, m)),
    AggregatorDef("gap_to_ideal", NoConfig, lambda s, w, i, m, g, c: gap_to_ideal(s, i, w, m), needs_ideals=True),
    AggregatorDef("chebyshev", NoConfig, lambda s, w, i, m, g, c: chebyshev(s, i, w, m), needs_ideals=True),
    AggregatorDef(
        "soft_chebyshev",
        SoftChebyshevConfig,
        lambda s, w, i, m, g, c: soft_chebyshev(s, i, w, m, c.tau),
        needs_ideals=True,
    ),
    AggregatorDef(
        "normalize_then_sum", NormalizeThenSumConfig, lambda s, w, i, m, g, c: normalize_then_sum(s, w, m, g, c.eps)
    ),
    AggregatorDef("moslim", MoslimConfig, None, needs_tags=True),
):
    AGGREGATORS.add(_def.name, _def)


def aggregate(
    method: str,
    scores: torch.Tensor,
    *,
    weights: Vector | None = None,
    ideals: Vector | None = None,
    mask: torch.Tensor | None = None,
    groups: Groups | None = None,
    config: StrictModel | None = None,
    **params: Any,
) -> torch.Tensor:
    """One reward per sample, ``[B]``, from ``scores [B, k]`` by a stateless method (its registry entry's ``reward``).

    ``config`` is the method's typed config (a recipe's); without it, ``params`` set its fields (``tau`` of
    ``soft_chebyshev``, ``eps`` of ``normalize_then_sum``), the others keeping their defaults. ``moslim`` keeps
    state: use :class:`moalign.rewards.MoslimMapper`.
    """
    entry = AGGREGATORS.get(method)  # raises UserError with the known names and a did-you-mean
    if entry.reward is None:
        raise ValueError(f"'{method}' keeps moving statistics: use moalign.rewards.MoslimMapper")
    unknown = set(params) - set(entry.config_cls.model_fields)
    if unknown or (config is not None and params):
        raise TypeError(f"aggregator '{method}' takes a config or its fields, not {', '.join(sorted(params))}")
    if config is None:
        config = entry.config_cls.model_construct(**params)
    return entry.reward(torch.as_tensor(scores), weights, ideals, mask, groups, config)
