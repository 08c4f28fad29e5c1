"""Every recipe shipped in recipes/ (subfolders included) parses and validates against the library."""

from pathlib import Path

import pytest

from moalign.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))


def test_the_demo_recipe_is_shipped():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.stages, f"{path} has no stages"


@pytest.mark.parametrize("size", [[], ["fast"], ["full"]])
def test_demo_ablate_profile_evaluates_every_trained_stage(size):
    demo = next(p for p in RECIPES if p.name == "demo.yaml")
    plain = load_recipe(demo, profile=size).stages[-1].config
    ablate = load_recipe(demo, profile=[*size, "ablate"]).stages[-1].config
    assert plain.models == ["stage:grpo"] and plain.controllability.models == ["reference", "grpo"]
    assert ablate.models == ["stage:sft", "stage:dpo", "stage:grpo"] and ablate.controllability.models is None
    # the size profile's settings survive the ablate profile
    assert ablate.num_samples == plain.num_samples and ablate.max_new_tokens == plain.max_new_tokens
