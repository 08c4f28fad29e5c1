"""Model specs -> loaded models. A spec is ``builtin:NAME``, a local directory or a hub id.

Every loader goes through :func:`resolve_model` (one clear :class:`UserError` for a model not found). A LoRA
checkpoint loads as the model it was trained on plus its adapter, merged, chains of adapters included
(:func:`adapter_base`); a ``./`` base is relative to the adapter's directory (:func:`portable_base`). Loading
is safe by default (:func:`pretrained_kwargs`): a model's own code runs only inside :func:`remote_code`, and
weights come from safetensors or ``torch.load(weights_only=True)``.

Notes: docs/papers.md#modelsloadingpy.
"""

from __future__ import annotations

import contextlib
import json
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


def adapter_base(adapter_dir: Path) -> str:
    """The model the LoRA adapter in ``adapter_dir`` was trained on (its ``base_model_name_or_path``).

    A base starting with ``./`` or ``../`` is relative to ``adapter_dir`` and returned as an absolute path;
    a built-in spec, an absolute path or a hub id is returned as written.
    """
    try:
        base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"LoRA adapter '{adapter_dir}': unreadable {ADAPTER_CONFIG} ({exc})") from exc
    if not isinstance(base, str) or not base:
        raise UserError(f"LoRA adapter '{adapter_dir}': {ADAPTER_CONFIG} names no base model")
    if base.startswith(("./", "../")):
        return os.path.normpath(adapter_dir.resolve() / base)
    return base


def portable_base(base: str, adapter_dir: Path, run_root: Path | None) -> str:
    """How ``adapter_dir``'s config names its base ``base`` so that the directory loads anywhere.

    Built-in specs and hub ids stay as they are; a local model inside ``run_root`` (an earlier stage of
    the same run) becomes a path relative to ``adapter_dir`` (``../../01-sft/model``), so the run
    directory can be copied or moved; any other local model becomes an absolute path.
    """
    if base.startswith(PREFIX):
        return base
    path = Path(base).expanduser()
    if not path.exists():
        return base  # a hub id
    path = path.resolve()
    if run_root is not None and path.is_relative_to(run_root.resolve()):
        relative = os.path.relpath(path, adapter_dir.resolve())
        return relative if relative.startswith("../") else f"./{relative}"
    return str(path)


def rebase_adapter(adapter_dir: Path, base: str, run_root: Path | None) -> None:
    """Record ``base`` (the model a stage started from) as the base of the adapter it saved in ``adapter_dir``.

    peft writes the ``name_or_path`` of the model it wrapped, which for a model loaded from an earlier
    LoRA stage is the root of the chain: loading the adapter would drop every stage in between.
    """
    from moalign.atomic import atomic_write_json

    config_path = adapter_dir / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = portable_base(base, adapter_dir, run_root)
    atomic_write_json(config_path, config)


def is_adapter(spec: str) -> bool:
    """Whether ``spec`` names a LoRA checkpoint directory (one with an ``adapter_config.json``)."""
    return not spec.startswith(PREFIX) and (Path(spec).expanduser() / ADAPTER_CONFIG).is_file()


def model_chain(spec: str) -> list[str]:
    """The models ``spec`` is built from, root base first and ``spec`` last: the bases of a chain of LoRA
    adapters, followed down to a model that is not an adapter."""
    chain = [spec]
    while is_adapter(chain[0]):
        base = adapter_base(Path(chain[0]).expanduser())
        if any(Path(base).resolve() == Path(m).resolve() for m in chain):
            raise UserError(f"LoRA adapter '{chain[0]}' names '{base}' as its base, which is built on the adapter")
        chain.insert(0, base)
    return chain


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
    """A ``PreTrainedModel`` for causal LM; float32 unless ``dtype`` says otherwise.

    A LoRA checkpoint loads as its whole chain (:func:`model_chain`): the root model, then each adapter
    merged in order.
    """
    import torch
    from transformers import AutoModelForCausalLM

    root, *adapters = model_chain(spec)
    path = resolve_model(root)
    model = _wrap_load_errors(
        root, AutoModelForCausalLM.from_pretrained, path, dtype=dtype or torch.float32, **pretrained_kwargs(), **kwargs
    )
    check_tokenizer_fits(root, path, model)
    for base_spec, adapter in zip([root, *adapters], adapters, strict=False):
        model = _merge_adapter(model, adapter, base_spec)
    return model.requires_grad_(True) if adapters else model  # peft froze the base: trainable, as if loaded


def _merge_adapter(model: Any, adapter: str, base_spec: str) -> Any:
    """``model`` with the LoRA adapter in the directory ``adapter`` folded into its weights."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, adapter, trust_remote_code=_TRUST_REMOTE_CODE.get())
    except RuntimeError as exc:  # torch's size mismatch when the adapter was trained on another model
        raise UserError(
            f"LoRA adapter '{adapter}' does not fit its base model '{base_spec}' "
            f"({str(exc).strip().splitlines()[-1].strip()})"
        ) from exc
    return peft_model.merge_and_unload()


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
