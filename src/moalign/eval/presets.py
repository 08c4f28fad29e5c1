"""Decoding presets of the papers (seed 004, section 4.5).

- ``greedy``: argmax decoding, the deterministic default;
- ``sampled``: temperature 0.6 with nucleus top-p 0.95 ("for final submissions");
- ``beam``: beam search with width 4 and length penalty 0.9 (the paper's evaluation setting).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from moalign.errors import UserError
from moalign.generation import SamplingConfig

DecodingPreset = Literal["greedy", "sampled", "beam"]

DECODING_PRESETS: dict[str, SamplingConfig] = {
    "greedy": SamplingConfig(temperature=0.0),
    "sampled": SamplingConfig(temperature=0.6, top_p=0.95),
    "beam": SamplingConfig(num_beams=4, length_penalty=0.9),
}


def decoding_preset(name: str, max_new_tokens: int) -> SamplingConfig:
    """The preset ``name`` with the given generation budget."""
    if name not in DECODING_PRESETS:
        raise UserError(f"unknown decoding preset '{name}'; known: {', '.join(DECODING_PRESETS)}")
    return replace(DECODING_PRESETS[name], max_new_tokens=max_new_tokens)
