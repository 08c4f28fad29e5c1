"""Rewarded Soups (seed 002 eq. 2, after Ramé et al. 2023): ``theta = sum_i lambda_i * theta_i``.

The ingredients are policies fine-tuned from one base model, each for one objective; a soup with
weights ``lambda`` is one policy for that preference mix, built at inference time without training.

LoRA adapters are souped through their merged weights: each adapter's delta ``B_i A_i * scaling`` is
folded into the base (:func:`moalign.models.load_causal_lm` does that) and the merged models are
interpolated, giving ``W + sum_i lambda_i B_i A_i * scaling``. Averaging the A and B matrices
separately is *not* the same: ``(sum_i lambda_i B_i)(sum_i lambda_i A_i)`` has cross terms
``lambda_i lambda_j B_i A_j`` that belong to no ingredient.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from moalign.errors import UserError

SOUP_FILE = "soup.json"
"""Written into a souped checkpoint: its ingredients, weights and the time the soup took."""
SOUP_KIND = "moalign-soup"


def soup_state_dicts(
    state_dicts: Iterable[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """``sum_i weights[i] * state_dicts[i]`` per tensor (seed 002 eq. 2); each tensor keeps its shape and dtype.

    Floating tensors are accumulated in float32 (float64 for float64 tensors) and cast back, so weights
    ``(1, 0, ...)`` return the first state dict exactly. Integer and boolean buffers are not
    interpolated: they must be equal in every state dict. ``state_dicts`` may be a generator (only one
    ingredient besides the running sum is then in memory). Raises :class:`UserError` on mismatched
    counts, keys, shapes or buffers, naming the ingredient (0-based) and the tensor.
    """
    soup: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    missing = object()
    count = 0
    for i, (sd, w) in enumerate(itertools.zip_longest(state_dicts, weights, fillvalue=missing)):
        if sd is missing or w is missing:
            raise UserError(f"soup: {len(weights)} weights for a different number of models")
        count += 1
        if i == 0:
            for name, tensor in sd.items():
                dtypes[name] = tensor.dtype
                if tensor.is_floating_point():
                    acc = torch.float64 if tensor.dtype == torch.float64 else torch.float32
                    soup[name] = tensor.detach().to(acc) * w
                else:
                    soup[name] = tensor.detach().clone()
            continue
        if set(sd) != set(soup):
            extra, lacking = sorted(set(sd) - set(soup)), sorted(set(soup) - set(sd))
            raise UserError(
                f"soup: model {i} has different parameters from model 0 "
                f"(only in model {i}: {extra[:3]}; only in model 0: {lacking[:3]})"
            )
        for name, tensor in sd.items():
            if tensor.shape != soup[name].shape:
                raise UserError(
                    f"soup: '{name}' has shape {tuple(tensor.shape)} in model {i} "
                    f"but {tuple(soup[name].shape)} in model 0"
                )
            if soup[name].is_floating_point():
                soup[name].add_(tensor.detach().to(soup[name].dtype), alpha=w)
            elif not torch.equal(tensor, soup[name]):
                raise UserError(f"soup: buffer '{name}' differs between model {i} and model 0")
    if count == 0:
        raise UserError("soup: no models")
    return {name: t.to(dtypes[name]) for name, t in soup.items()}


def check_weights(weights: Sequence[float], num_models: int, *, normalised: bool = True) -> None:
    """Refuse a weight count that differs from the model count, and (``normalised``) weights not summing to 1."""
    if len(weights) != num_models:
        raise UserError(f"soup: {len(weights)} weights for {num_models} models; give one weight per model")
    if num_models < 1:
        raise UserError("soup: name at least one model")
    if normalised and not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise UserError(
            f"soup: weights sum to {sum(weights):g}, not 1 (seed 002 eq. 2 interpolates); "
            "pass --allow-unnormalised to allow any weights"
        )


def _architecture(model: Any) -> tuple[str, tuple[str, ...]]:
    return model.config.model_type, tuple(model.config.architectures or ())


def soup_models(specs: Sequence[str], weights: Sequence[float], output: str | Path, *, normalised: bool = True) -> Path:
    """Soup the models ``specs`` (full checkpoints or LoRA adapter directories) into a plain HF checkpoint
    at ``output`` (with the first model's config and tokenizer and a ``soup.json``); returns ``output``."""
    from moalign.atomic import atomic_write_json
    from moalign.models.card import derived_card, write_card
    from moalign.models.loading import load_causal_lm, load_tokenizer, resolve_model
    from moalign.models.saving import save_final_model

    check_weights(weights, len(specs), normalised=normalised)
    t0, c0 = time.time(), time.process_time()
    template = load_causal_lm(specs[0])
    architecture = _architecture(template)

    def ingredients() -> Iterator[Mapping[str, torch.Tensor]]:
        yield template.state_dict()
        for i, spec in enumerate(specs[1:], start=1):
            model = load_causal_lm(spec)
            if _architecture(model) != architecture:
                raise UserError(
                    f"soup: model {i} ('{spec}') is a {_architecture(model)}, model 0 ('{specs[0]}') a {architecture}"
                )
            yield model.state_dict()

    template.load_state_dict(soup_state_dicts(ingredients(), weights))
    out = save_final_model(template, load_tokenizer(specs[0]), Path(output))
    resolved = [resolve_model(s) for s in specs]
    ingredients_text = "\n".join(f"- `{spec}` x {w:g}" for spec, w in zip(specs, weights, strict=True))
    description = f"A Rewarded Soup (seed 002 eq. 2), `theta = sum_i lambda_i theta_i`, of:\n\n{ingredients_text}"
    write_card(out, derived_card("Rewarded Soup", description, None))
    atomic_write_json(
        out / SOUP_FILE,
        {
            "kind": SOUP_KIND,
            "models": [str(Path(r).resolve()) if Path(r).exists() else r for r in resolved],
            "weights": list(weights),
            "wall_time_s": round(time.time() - t0, 3),
            "cpu_time_s": round(time.process_time() - c0, 3),
        },
    )
    return out
