"""The MOSLIM reward mapping with its moving statistics per (dimension, intensity) (seed 002, eq. 11)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from moalign.rewards.aggregators import MoslimK, active_entries, moslim_reward


class MoslimMapper:
    """Maps target-intensity probabilities ``[B, k]`` to one reward per sample, learning as it goes.

    Seed 002 (section 2.3) records "the moving average and standard deviation of each preference
    intensity within every preference head" during training and z-normalises with them, so that
    scores of different dimensions become additive. Statistics are kept per (dimension, intensity):
    the probability the model assigns to intensity 4 is not comparable with the one it assigns to 2.

    Reading taken for "moving": by default (``momentum=None``) the statistics are cumulative over
    every sample seen (exact, order-independent, nothing to tune); ``momentum=m`` uses an
    exponential moving average instead (``mean <- (1 - m) mean + m batch_mean``, likewise for the
    variance), which follows a policy whose outputs drift. Each batch updates the statistics
    *before* it is mapped, so the first batch is normalised by its own statistics; a key seen once
    has std 0 and maps to 0. ``k`` is explained in :func:`moalign.rewards.aggregators.moslim_reward`.

    The state (``state_dict`` / ``load_state_dict``) is plain JSON-serialisable data, so a resumed
    run continues with exactly the statistics it stopped with.
    """

    def __init__(
        self, dimensions: Sequence[str], *, k: MoslimK = "all", momentum: float | None = None, eps: float = 1e-6
    ) -> None:
        if len(set(dimensions)) != len(dimensions) or not dimensions:
            raise ValueError(f"dimensions must be distinct and non-empty, got {list(dimensions)}")
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.dimensions = list(dimensions)
        self.k: MoslimK = k
        self.momentum = momentum
        self.eps = eps
        self.stats: dict[tuple[str, int], list[float]] = {}
        """(dimension, intensity) -> [count, mean, variance] (population variance)."""

    def __call__(
        self,
        p_target: torch.Tensor,
        intensities: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        update: bool = True,
    ) -> torch.Tensor:
        """Rewards ``[B]`` for ``p_target [B, k]`` (columns in ``self.dimensions`` order).

        ``intensities [B, k]`` holds each entry's target intensity (any value where inactive).
        An entry is active where ``p_target`` is not NaN and ``mask`` (default all True) is True.
        With ``update`` the batch first updates the statistics (training); without, they are only
        read (evaluation).
        """
        p_target = torch.as_tensor(p_target, dtype=torch.float64)
        active = active_entries(p_target, mask)
        self._check(p_target, intensities)
        if update:
            self.update(p_target, intensities, active)
        mean, std = self.gather(intensities, active)
        return moslim_reward(p_target, mean, std, active, self.k, self.eps)

    def _check(self, p_target: torch.Tensor, intensities: torch.Tensor) -> None:
        if p_target.dim() != 2 or p_target.shape[1] != len(self.dimensions):
            raise ValueError(f"p_target must be [B, {len(self.dimensions)}], got {tuple(p_target.shape)}")
        if tuple(intensities.shape) != tuple(p_target.shape):
            raise ValueError(f"intensities shape {tuple(intensities.shape)} != p_target {tuple(p_target.shape)}")

    def update(self, p_target: torch.Tensor, intensities: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Fold the active entries of a batch into the per-(dimension, intensity) statistics."""
        p_target = torch.as_tensor(p_target, dtype=torch.float64)
        active = active_entries(p_target, mask)
        self._check(p_target, intensities)
        for col, dim in enumerate(self.dimensions):
            rows = active[:, col]
            if not rows.any():
                continue
            values, levels = p_target[rows, col], intensities[rows, col].long()
            for level in torch.unique(levels).tolist():
                batch = values[levels == level]
                self._merge((dim, int(level)), batch.numel(), batch.mean().item(), batch.var(correction=0).item())

    def _merge(self, key: tuple[str, int], n: int, mean: float, var: float) -> None:
        if key not in self.stats:
            self.stats[key] = [float(n), mean, var]
            return
        count, old_mean, old_var = self.stats[key]
        delta = mean - old_mean
        if self.momentum is None:  # Chan et al.'s parallel merge of two populations
            total = count + n
            new_mean = old_mean + delta * n / total
            new_var = (count * old_var + n * var + delta**2 * count * n / total) / total
        else:
            m = self.momentum
            total = count + n
            new_mean = old_mean + m * delta
            new_var = (1 - m) * (old_var + m * delta**2) + m * var
        self.stats[key] = [total, new_mean, new_var]

    def gather(self, intensities: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-entry ``(mean, std)`` ``[B, k]`` of each entry's (dimension, intensity); NaN if unseen."""
        shape = tuple(intensities.shape)
        mean = torch.full(shape, float("nan"), dtype=torch.float64)
        std = torch.full(shape, float("nan"), dtype=torch.float64)
        levels = intensities.long()
        for col, dim in enumerate(self.dimensions):
            for row in torch.nonzero(mask[:, col]).flatten().tolist():
                key = (dim, int(levels[row, col]))
                if key not in self.stats:
                    raise ValueError(f"no statistics yet for dimension '{dim}' intensity {key[1]}: update first")
                _, mu, var = self.stats[key]
                mean[row, col], std[row, col] = mu, math.sqrt(max(var, 0.0))
        return mean, std

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: settings and ``{"dimension:intensity": [count, mean, var]}``."""
        return {
            "dimensions": list(self.dimensions),
            "k": self.k,
            "momentum": self.momentum,
            "eps": self.eps,
            "stats": {f"{dim}:{level}": list(values) for (dim, level), values in sorted(self.stats.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict` (dimensions must match)."""
        if list(state["dimensions"]) != self.dimensions:
            raise ValueError(f"saved dimensions {state['dimensions']} differ from {self.dimensions}")
        self.k, self.momentum, self.eps = state["k"], state["momentum"], state["eps"]
        stats: dict[tuple[str, int], list[float]] = {}
        for key, values in state["stats"].items():
            dim, _, level = key.rpartition(":")
            stats[(dim, int(level))] = [float(v) for v in values]
        self.stats = stats
