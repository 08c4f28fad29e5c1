"""Evaluation: generation cache, judging, win rate, BLEU, perplexity, controllability.

Stable public names: :func:`evaluate` (writes ``metrics.json`` and ``samples.jsonl``), :class:`EvalSettings`,
:class:`ControllabilityConfig`, :class:`GenerationCache`, :data:`DECODING_PRESETS`; the arithmetic lives in
:mod:`moalign.eval.metrics`.
"""

from moalign.eval.controllability import ControllabilityConfig, controllability
from moalign.eval.evaluate import METRICS_FILE, SAMPLES_FILE, EvalSettings, evaluate, judge_reward
from moalign.eval.generations import GenerationCache, cached_generate, model_fingerprint
from moalign.eval.presets import DECODING_PRESETS, decoding_preset

__all__ = [
    "DECODING_PRESETS",
    "METRICS_FILE",
    "SAMPLES_FILE",
    "ControllabilityConfig",
    "EvalSettings",
    "GenerationCache",
    "cached_generate",
    "controllability",
    "decoding_preset",
    "evaluate",
    "judge_reward",
    "model_fingerprint",
]
