import json

import pytest
import torch

from moalign.errors import UserError
from moalign.models import load_causal_lm
from moalign.models.soup import SOUP_FILE, check_weights, soup_models, soup_state_dicts


def test_soup_of_state_dicts_is_the_weighted_sum_worked_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "step": torch.tensor(3)}
    b = {"w": torch.tensor([5.0, -2.0]), "step": torch.tensor(3)}
    soup = soup_state_dicts([a, b], [0.25, 0.75])
    assert soup["w"].tolist() == [0.25 * 1 + 0.75 * 5, 0.25 * 2 + 0.75 * -2]  # [4.0, -1.0]
    assert soup["step"].item() == 3 and soup["step"].dtype == torch.int64


def test_weights_one_zero_return_the_first_state_dict_exactly_in_its_dtype():
    torch.manual_seed(0)
    a = {"w": torch.randn(4, 3).to(torch.bfloat16)}
    b = {"w": torch.randn(4, 3).to(torch.bfloat16)}
    soup = soup_state_dicts(iter([a, b]), [1.0, 0.0])
    assert soup["w"].dtype == torch.bfloat16 and torch.equal(soup["w"], a["w"])


@pytest.mark.parametrize(
    ("b", "message"),
    [
        ({"w": torch.zeros(3), "step": torch.tensor(3)}, r"'w' has shape \(3,\) in model 1 but \(2,\) in model 0"),
        ({"v": torch.zeros(2), "step": torch.tensor(3)}, "model 1 has different parameters"),
        ({"w": torch.zeros(2), "step": torch.tensor(4)}, "buffer 'step' differs"),
    ],
)
def test_mismatched_ingredients_are_refused(b, message):
    a = {"w": torch.ones(2), "step": torch.tensor(3)}
    with pytest.raises(UserError, match=message):
        soup_state_dicts([a, b], [0.5, 0.5])


def test_weight_checks():
    with pytest.raises(UserError, match="3 weights for 2 models"):
        check_weights([0.2, 0.3, 0.5], 2)
    with pytest.raises(UserError, match="weights sum to 0.9, not 1"):
        check_weights([0.5, 0.4], 2)
    check_weights([0.5, 0.4], 2, normalised=False)
    with pytest.raises(UserError, match="2 weights for a different number of models"):
        soup_state_dicts([{"w": torch.ones(1)}], [0.5, 0.5])


def _perturbed_copy(src, dst, seed):
    """The tiny model with every floating weight moved by a seeded random amount, saved to ``dst``."""
    from transformers import AutoTokenizer

    model = load_causal_lm(str(src))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def _params(path):
    return {k: v.clone() for k, v in load_causal_lm(str(path)).state_dict().items()}


def test_souping_two_full_models(tiny_llama_dir, tmp_path):
    first = _perturbed_copy(tiny_llama_dir, tmp_path / "a", 1)
    second = _perturbed_copy(tiny_llama_dir, tmp_path / "b", 2)
    pa, pb = _params(first), _params(second)

    only_first = soup_models([str(first), str(second)], [1.0, 0.0], tmp_path / "s10")
    assert all(torch.equal(v, pa[k]) for k, v in _params(only_first).items())

    half = soup_models([str(first), str(second)], [0.5, 0.5], tmp_path / "s55")
    souped = _params(half)
    assert souped.keys() == pa.keys()
    for k, v in souped.items():
        torch.testing.assert_close(v, (pa[k] + pb[k]) / 2, rtol=0, atol=1e-6)
    record = json.loads((half / SOUP_FILE).read_text())
    assert record["weights"] == [0.5, 0.5] and record["models"] == [str(first.resolve()), str(second.resolve())]
    assert (half / "tokenizer_config.json").exists() and (half / "config.json").exists()


def _adapter(base, dst, seed):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(load_causal_lm(str(base)), config)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(base).save_pretrained(dst)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    a, b = layer.lora_A["default"].weight.detach().clone(), layer.lora_B["default"].weight.detach().clone()
    return dst, a, b


def test_souping_two_lora_adapters_is_the_base_plus_the_mean_of_their_deltas(tiny_llama_dir, tmp_path):
    first, a1, b1 = _adapter(tiny_llama_dir, tmp_path / "lora1", 1)
    second, a2, b2 = _adapter(tiny_llama_dir, tmp_path / "lora2", 2)
    key = "model.layers.0.self_attn.q_proj.weight"
    base = _params(tiny_llama_dir)[key]
    scaling = 8 / 4  # lora_alpha / r

    souped = _params(soup_models([str(first), str(second)], [0.5, 0.5], tmp_path / "soup"))[key]
    expected = base + 0.5 * (b1 @ a1 + b2 @ a2) * scaling
    torch.testing.assert_close(souped, expected, rtol=0, atol=1e-5)
    averaged_factors = base + ((b1 + b2) / 2) @ ((a1 + a2) / 2) * scaling
    assert (souped - averaged_factors).abs().max() > 1e-3  # the reading the docstring rules out
    untouched = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(_params(tmp_path / "soup")[untouched], _params(tiny_llama_dir)[untouched])


def test_models_of_different_shapes_are_refused(tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_llama_dir)
    config.intermediate_size = 96
    other = tmp_path / "other"
    LlamaForCausalLM(config).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(other)
    with pytest.raises(UserError, match=r"'model.layers.0.mlp.gate_proj.weight' has shape \(96, 64\) in model 1"):
        soup_models([str(tiny_llama_dir), str(other)], [0.5, 0.5], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_soup_command_takes_several_values_per_option(tiny_llama_dir, tmp_path):
    from typer.testing import CliRunner

    from moalign.cli import app

    second = _perturbed_copy(tiny_llama_dir, tmp_path / "b", 2)
    out = tmp_path / "soup"
    args = ["soup", "--models", str(tiny_llama_dir), str(second), "--weights", "1", "0", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert all(torch.equal(v, _params(tiny_llama_dir)[k]) for k, v in _params(out).items())
    bad = CliRunner().invoke(app, ["soup", "--models", "a", "--weighs", "1", "--out", str(out)])
    assert isinstance(bad.exception, UserError) and "unknown option --weighs" in str(bad.exception)
    bad = CliRunner().invoke(app, ["soup", "--models", "a", "b", "--weights", "x", "y", "--out", str(out)])
    assert "--weights must be numbers, got x y" in str(bad.exception)
