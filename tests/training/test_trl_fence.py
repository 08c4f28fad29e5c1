"""The TRL fence (:mod:`moalign.training.trl_fence`) still fits the installed TRL.

The fence was written for TRL 1.16.0. It overrides private TRL methods, calls TRL helpers and reads TRL's
attributes; a TRL release can rename or re-sign any of them without notice. These tests compare each one with
the installed TRL (parameter names, kinds and defaults; annotations are left out). When one fails after a TRL
upgrade, read the new TRL code, adapt the fence, record the new signature here and move the pin in
``pyproject.toml`` to the new minor series.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import trl

from moalign.training import trl_fence

WRITTEN_FOR = "1.16.0"
"""The TRL version the fence was written for and these signatures were recorded from."""

OVERRIDES = {
    ("DPOTrainer", "compute_ref_log_probs"): "(self, model, inputs)",
    ("DPOTrainer", "_compute_loss"): "(self, model, inputs, return_outputs)",
    ("GRPOTrainer", "_calculate_rewards"): "(self, inputs, prompts, completions, completion_ids_list)",
    ("GRPOTrainer", "_generate_and_score_completions"): "(self, inputs)",
    ("GRPOTrainer", "_generate_single_turn"): (
        "(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False)"
    ),
    ("GRPOTrainer", "_get_per_token_logps_and_entropies"): (
        "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
        "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
        "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
        "image_position_ids=None)"
    ),
    ("RLOOTrainer", "_generate_single_turn"): "(self, prompt_ids, images, multimodal_fields)",
    ("RLOOTrainer", "_get_per_token_logps_and_entropies"): (
        "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
        "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
        "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
        "image_position_ids=None)"
    ),
    ("SFTTrainer", "compute_loss"): "(self, model, inputs, return_outputs=False, num_items_in_batch=None)",
}
"""``(TRL class, method)`` -> the signature of the TRL method a fence class overrides."""

HELPERS = {
    "trl.extras.profiling.profiling_context": "(trainer, name)",
    "trl.models.unwrap_model_for_generation": (
        "(model, accelerator, gather_deepspeed3_params=True, generation_kwargs=None, "
        "gradient_checkpointing_kwargs=None)"
    ),
    "trl.models.utils.disable_gradient_checkpointing": "(model, gradient_checkpointing_kwargs=None)",
    "trl.trainer.utils.pad": "(tensors, padding_value=0, padding_side='right', pad_to_multiple_of=None)",
    "trl.trainer.utils.use_adapter": "(model, adapter_name)",
}
"""TRL helpers outside its public API that the fence calls -> their signatures."""

PATCHED = {("DPOTrainer", "_precompute_ref_logps"): "timed_reference_precompute times it by patching it"}
"""The TRL internals the fence patches rather than subclasses: they must still exist."""

MESSAGE = f"moalign.training.trl_fence was written for TRL {WRITTEN_FOR}; TRL {version('trl')} is installed"


def plain(signature: inspect.Signature) -> str:
    """A signature's parameter names, kinds and defaults, without annotations."""
    empty = inspect.Parameter.empty
    parameters = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=parameters, return_annotation=empty))


def fence_trainers() -> list[type]:
    """The fence's trainer classes (each has a TRL trainer among its bases)."""
    return [
        cls
        for cls in vars(trl_fence).values()
        if isinstance(cls, type) and cls.__module__ == trl_fence.__name__ and trl_base(cls) is not None
    ]


def trl_base(cls: type) -> type | None:
    """The first TRL class in ``cls``'s method resolution order."""
    return next((c for c in cls.__mro__ if c.__module__.split(".")[0] == "trl"), None)


def fence_parts(cls: type) -> list[type]:
    """The fence's own classes in ``cls``'s method resolution order (the class and its mixins)."""
    return [c for c in cls.__mro__ if c.__module__ == trl_fence.__name__]


def trl_sources(base: type) -> str:
    """The source of every module that defines a class of ``base``'s method resolution order (TRL, transformers)."""
    modules = {inspect.getmodule(c) for c in base.__mro__ if c is not object}
    return "\n".join(inspect.getsource(m) for m in modules if m is not None and hasattr(m, "__file__"))


def test_the_fence_was_written_for_the_installed_minor_series():
    assert version("trl").split(".")[:2] == WRITTEN_FOR.split(".")[:2], MESSAGE


def test_every_override_of_trl_is_recorded_and_keeps_its_signature():
    found = set()
    for cls in fence_trainers():
        base = trl_base(cls)
        for part in fence_parts(cls):
            for name, value in vars(part).items():
                if inspect.isfunction(value) and name != "__init__" and hasattr(base, name):
                    found.add((base.__name__, name))
    assert found == set(OVERRIDES), "record each overridden TRL method (and its signature) in OVERRIDES"
    for (cls_name, name), expected in OVERRIDES.items():
        signature = plain(inspect.signature(getattr(getattr(trl, cls_name), name)))
        assert signature == expected, f"{cls_name}.{name}: {MESSAGE}"


@pytest.mark.parametrize("path", sorted(HELPERS))
def test_the_trl_helpers_the_fence_calls_keep_their_signatures(path):
    module, name = path.rsplit(".", 1)
    helper = getattr(__import__(module, fromlist=[name]), name)
    assert plain(inspect.signature(helper)) == HELPERS[path], f"{path}: {MESSAGE}"


def test_the_trl_internals_the_fence_patches_exist():
    for (cls_name, name), why in PATCHED.items():
        assert callable(getattr(getattr(trl, cls_name), name, None)), f"{cls_name}.{name} ({why}): {MESSAGE}"


def test_the_attributes_the_fence_reads_are_trls_and_the_names_it_adds_are_not():
    for cls in fence_trainers():
        base = trl_base(cls)
        theirs = trl_sources(base)
        ours = {name for part in fence_parts(cls) for name in vars(part) if not name.startswith("__")}
        source = "\n".join(inspect.getsource(part) for part in fence_parts(cls))
        ours |= set(re.findall(r"self\.(\w+) = ", source))
        for name in ours - {name for _, name in OVERRIDES}:
            assert not hasattr(base, name), f"{cls.__name__}.{name} is TRL's too"
            assert not re.search(rf"self\.{name}\b", theirs), f"{cls.__name__}.{name} is TRL's too"
        for name in set(re.findall(r"self\.(\w+)", source)) - ours:
            assert hasattr(base, name) or re.search(rf"self\.{name}\b", theirs), f"{base.__name__}.{name}: {MESSAGE}"


def test_no_module_but_the_fence_subclasses_a_trl_trainer():
    trainers = {name for name in dir(trl) if name.endswith("Trainer")}
    src = Path(trl_fence.__file__).parents[1]
    for path in src.rglob("*.py"):
        if path == Path(trl_fence.__file__):
            continue
        for bases in re.findall(r"^\s*class \w+\(([^)]*)\)", path.read_text(), re.MULTILINE):
            named = {b.strip().split(".")[-1] for b in bases.split(",")}
            assert not named & trainers, f"{path.relative_to(src)} subclasses a TRL trainer outside the fence"
