"""Models: spec resolution (built-in, local, hub), the embedded defaults and loaders."""

from moalign.models.builtin import BUILTINS, BuiltinModel, materialise, moalign_home
from moalign.models.loading import load_causal_lm, load_encoder, load_tokenizer, resolve_model

__all__ = [
    "BUILTINS",
    "BuiltinModel",
    "load_causal_lm",
    "load_encoder",
    "load_tokenizer",
    "materialise",
    "moalign_home",
    "resolve_model",
]
