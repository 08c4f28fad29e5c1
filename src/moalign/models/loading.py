"""Model specs -> loaded models. A spec is ``builtin:NAME``, a local directory or a hub id.

Every loader goes through :func:`resolve_model`, so a model that cannot be found gives one
clear :class:`UserError` naming the spec and how to obtain it.

Loading is safe by default: every ``from_pretrained`` of the project passes :func:`pretrained_kwargs`,
so a model's own Python code (``auto_map``) runs only inside :func:`remote_code` (a recipe's
``trust_remote_code: true``), and weights come from safetensors or from ``torch.load(weights_only=True)``,
which refuses pickled code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from moalign.errors import UserError
from moalign.models.builtin import PREFIX, get_builtin, materialise

ADAPTER_CONFIG = "adapter_config.json"

_TRUST_REMOTE_CODE: ContextVar[bool] = ContextVar("moalign_trust_remote_code", default=False)


@contextlib.contextmanager
def remote_code(allowed: bool) -> Iterator[None]:
    """Within the block, models may run their own Python code (``trust_remote_code``) if ``allowed``."""
    token = _TRUST_REMOTE_CODE.set(allowed)
    try:
        yield
    finally:
        _TRUST_REMOTE_CODE.reset(token)


def pretrained_kwargs(*, weights: bool = True) -> dict[str, Any]:
    """The safety keywords of every ``from_pretrained``: remote code only where allowed (:func:`remote_code`),
    and, for weights, no unpickling of anything but tensors."""
    kwargs: dict[str, Any] = {"trust_remote_code": _TRUST_REMOTE_CODE.get()}
    if weights:
        kwargs["weights_only"] = True
    return kwargs


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_model(spec: str) -> str:
    """A local directory (or, online, a hub id) that ``from_pretrained`` can open for ``spec``."""
    if spec.startswith(PREFIX):
        return str(materialise(get_builtin(spec)))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").exists() or (path / ADAPTER_CONFIG).exists()):
            raise UserError(f"model '{spec}': '{path}' is not a Hugging Face model directory (no config.json)")
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"model '{spec}': local directory '{path}' does not exist")
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(spec, "config.json"), str):
            raise UserError(
                f"model '{spec}' is not a built-in, not a local directory and not in the Hugging Face "
                "cache, and HF_HUB_OFFLINE=1 forbids downloading it. On a machine with network run "
                f"`hf download {spec}` (or unset HF_HUB_OFFLINE), or pass a local directory; "
                "`moalign models list` shows the built-ins"
            )
    return spec


def _wrap_load_errors(spec: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    import pickle

    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "custom code" in first and not _TRUST_REMOTE_CODE.get():
            first += " Set 'trust_remote_code: true' in the recipe to run it, if you trust its source."
        raise UserError(f"cannot load model '{spec}': {first}") from exc


def load_tokenizer(spec: str, *, padding_side: str = "left") -> Any:
    """The model's tokenizer, with a pad token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    path = resolve_model(spec)
    tokenizer = _wrap_load_errors(spec, AutoTokenizer.from_pretrained, path, **pretrained_kwargs(weights=False))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(spec: str, *, dtype: Any = None, **kwargs: Any) -> Any:
    """A ``PreTrainedModel`` for causal LM; float32 unless ``dtype`` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec)
    adapter = Path(path) / ADAPTER_CONFIG
    if adapter.exists():  # a LoRA checkpoint: load its base and fold the adapter in
        import json

        from peft import PeftModel

        base_spec = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = load_causal_lm(base_spec, dtype=dtype, **kwargs)
        try:
            peft_model = PeftModel.from_pretrained(base, path, trust_remote_code=_TRUST_REMOTE_CODE.get())
        except RuntimeError as exc:  # torch's size mismatch when the adapter was trained on another model
            raise UserError(
                f"LoRA adapter '{spec}' does not fit its base model '{base_spec}' "
                f"({str(exc).strip().splitlines()[-1].strip()})"
            ) from exc
        return peft_model.merge_and_unload()
    model = _wrap_load_errors(
        spec, AutoModelForCausalLM.from_pretrained, path, dtype=dtype or torch.float32, **pretrained_kwargs(), **kwargs
    )
    check_tokenizer_fits(spec, path, model)
    return model


def check_tokenizer_fits(spec: str, path: str, model: Any) -> None:
    """A :class:`UserError` if the tokenizer saved beside the model has ids beyond the model's embedding (a
    checkpoint directory mixing two models); directories without a tokenizer are not checked."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer_config.json").is_file():
        return
    size = len(_wrap_load_errors(spec, AutoTokenizer.from_pretrained, path, **pretrained_kwargs(weights=False)))
    rows = model.get_input_embeddings().num_embeddings
    if size > rows:
        raise UserError(
            f"model '{spec}': its tokenizer has {size} tokens but the model's embedding has {rows}: "
            "the tokenizer and the weights come from different models"
        )


def load_encoder(spec: str, **kwargs: Any) -> Any:
    """A bare encoder (``AutoModel``), e.g. the sentence embedder ``builtin:minilm-l6``."""
    from transformers import AutoModel

    path = resolve_model(spec)
    return _wrap_load_errors(spec, AutoModel.from_pretrained, path, **pretrained_kwargs(), **kwargs)
