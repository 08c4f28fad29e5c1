"""The multi-head classification reward model (seed 002, MOSLIM).

``moalign.rm.load(path)`` returns a :class:`~moalign.rm.model.MultiHeadRewardModel` whose
``dimensions`` map each preference dimension to its number of intensity classes and whose
``score(prompts, responses, batch_size=...)`` returns :class:`~moalign.rm.model.RMScores`.
Torch is imported on first use, so importing this package (e.g. for the CLI) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moalign.rm.model import MultiHeadRewardModel, RMScores, load

__all__ = ["MultiHeadRewardModel", "RMScores", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from moalign.rm import model

        return getattr(model, name)
    raise AttributeError(f"module 'moalign.rm' has no attribute '{name}'")
