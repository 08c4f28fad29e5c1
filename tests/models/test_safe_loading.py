"""Safe loading: no model code runs unless a recipe allows it, weights never unpickle code, user scorers
come from the file the recipe names, and offline runs never open a socket."""

from __future__ import annotations

import ast
import json
import os
import pickle
import socket
from pathlib import Path

import pytest

from moalign.errors import UserError
from moalign.models.loading import pretrained_kwargs

SRC = Path(__file__).resolve().parents[2] / "src" / "moalign"


def tiny_config_dir(path: Path) -> Path:
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    ).save_pretrained(path)
    return path


def test_model_code_does_not_run_by_default(tmp_path):
    from moalign.models import load_causal_lm

    model = tiny_config_dir(tmp_path / "custom")
    marker = tmp_path / "code-ran"
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="custom", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_custom.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n    model_type = 'custom'\n"
    )
    with pytest.raises(UserError, match="contains custom code.*Set 'trust_remote_code: true' in the recipe"):
        load_causal_lm(str(model))
    assert not marker.exists()


def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    from moalign.models import load_causal_lm

    model = tiny_config_dir(tmp_path / "pickled")
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"model.embed_tokens.weight": Payload()}))
    with pytest.raises(UserError, match=f"cannot load model '{model}': Weights only load failed"):
        load_causal_lm(str(model))
    assert not marker.exists()


def test_only_a_recipe_allows_remote_code_and_only_for_its_run(tmp_path, monkeypatch):
    from moalign.config.yaml_source import YamlSource
    from moalign.pipeline import run_recipe
    from moalign.recipe import validate_recipe
    from moalign.run_dir import RunDir

    seen: list[bool] = []
    log = RunDir.log_metrics
    monkeypatch.setattr(
        RunDir,
        "log_metrics",
        lambda self, *a, **k: (seen.append(pretrained_kwargs()["trust_remote_code"]), log(self, *a, **k)),
    )
    for name, allowed in (("default", None), ("trusting", True)):
        data = {"name": name, "stages": [{"test_echo": {}}]}
        if allowed is not None:
            data["trust_remote_code"] = allowed
        run_recipe(validate_recipe(YamlSource(data=data, name="r.yaml")), output_dir=tmp_path)
    assert seen[0] is False and True in seen and seen[-1] is True
    assert pretrained_kwargs() == {"trust_remote_code": False, "weights_only": True}


def _loads_weights_safely(call: ast.Call) -> bool:
    keywords = {k.arg for k in call.keywords}
    starred = [k.value for k in call.keywords if k.arg is None]
    uses_policy = any(isinstance(v, ast.Call) and getattr(v.func, "id", "") == "pretrained_kwargs" for v in starred)
    return uses_policy or "trust_remote_code" in keywords


def test_every_from_pretrained_in_the_package_passes_the_safety_keywords():
    """A ``from_pretrained`` (called, or handed to a wrapper) always says whether remote code may run."""
    unsafe = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            targets = [node.func, *node.args]
            if any(isinstance(t, ast.Attribute) and t.attr == "from_pretrained" for t in targets):
                if not _loads_weights_safely(node):
                    unsafe.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert unsafe == []


def test_python_scorer_is_imported_from_the_named_file_only(tmp_path, monkeypatch):
    from moalign.rewards.scorers.python_function import import_function

    for name, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.py").write_text(f"def score(p, c, **k):\n    return [{value}] * len(c)\n")
    assert import_function(f"{tmp_path / 'a' / 'scores.py'}:score")(["p"], ["c"]) == [1.0]
    assert import_function(f"{tmp_path / 'b' / 'scores.py'}:score")(["p"], ["c"]) == [2.0]
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path / "a")
    with pytest.raises(UserError, match="file 'missing/scores.py' not found"):
        import_function("missing/scores.py:score")


def test_offline_run_never_opens_a_socket(tmp_path, monkeypatch, tiny_llama_dir):
    """Resolve a built-in, load a tokenizer and run a small recipe (data, model, generation, judge) with
    every socket refused."""
    from moalign.config.yaml_source import YamlSource
    from moalign.models import load_tokenizer, resolve_model
    from moalign.pipeline import run_recipe
    from moalign.recipe import validate_recipe

    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in an offline test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(OSError, match="offline test"):  # the block works
        socket.create_connection(("127.0.0.1", 9))
    attempts.clear()
    assert Path(resolve_model("builtin:minilm-l6")).is_dir()
    assert load_tokenizer("builtin:smollm2-135m-instruct").chat_template
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Say hi."}\n{"prompt": "Name a colour."}\n')
    stage = {"dataset": str(data), "num_samples": 2, "max_new_tokens": 2, "cache": False, "judge": "length"}
    recipe = {"name": "offline", "model": str(tiny_llama_dir), "stages": [{"eval": stage}]}
    run = run_recipe(validate_recipe(YamlSource(data=recipe, name="r.yaml")), output_dir=tmp_path)
    assert (run.root / "summary.json").is_file()
    assert attempts == []
