"""The chat_template stage: the input model, its tags rendered by the saved tokenizer's template."""

import json

import pytest

from moalign.data.dimensions import spell_out_tags
from moalign.errors import UserError
from moalign.models import load_causal_lm, load_tokenizer
from moalign.pipeline import run_recipe
from moalign.recipe import load_recipe


def test_saved_model_renders_its_tags_and_keeps_the_input_weights(tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: ct\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n  - chat_template: {{}}\n"
    )
    run = run_recipe(load_recipe(recipe))
    out = run.root / "01-chat_template" / "model"
    prompt = "<brevity 1> <structure 4> Explain tides."
    chat = [{"role": "user", "content": prompt}]
    rendered = load_tokenizer(str(out)).apply_chat_template(chat, tokenize=False)
    original = load_tokenizer(str(tiny_llama_dir)).apply_chat_template(chat, tokenize=False)
    assert spell_out_tags(prompt) in rendered and prompt in original and prompt not in rendered
    before, after = load_causal_lm(str(tiny_llama_dir)).state_dict(), load_causal_lm(str(out)).state_dict()
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    summary = json.loads(run.summary_path.read_text())
    assert summary["final_model"] == "01-chat_template/model"


def test_a_lora_input_is_refused(tmp_path, tiny_llama_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_llama_dir)}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: ct\nmodel: {adapter}\noutput_dir: {tmp_path / 'runs'}\nstages:\n  - chat_template: {{}}\n"
    )
    with pytest.raises(UserError, match="needs a full model"):
        run_recipe(load_recipe(recipe))
