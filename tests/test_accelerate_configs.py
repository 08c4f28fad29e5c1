"""The shipped ``accelerate launch`` configurations parse with accelerate's own loader and say how to use them."""

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
EXPECTED = {"ddp": ("MULTI_GPU", None), "fsdp": ("FSDP", None), "zero2": ("DEEPSPEED", 2), "zero3": ("DEEPSPEED", 3)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_config_loads_and_documents_its_command(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / f"{name}.yaml"
    config = load_config_from_file(str(path))
    kind, zero_stage = EXPECTED[name]
    assert config.distributed_type.value == kind
    assert config.mixed_precision == "bf16"
    if zero_stage is not None:
        assert config.deepspeed_config["zero_stage"] == zero_stage
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
    command = f"accelerate launch --config_file configs/accelerate/{name}.yaml -m moalign run RECIPE.yaml"
    assert command in path.read_text()


def test_no_other_accelerate_configs_are_shipped_untested():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)
