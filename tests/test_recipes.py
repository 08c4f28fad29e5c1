"""Every recipe shipped in recipes/ (subfolders included) parses and validates against the library."""

from pathlib import Path

import pytest

from moalign.config import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))


def test_the_demo_recipe_is_shipped():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.stages, f"{path} has no stages"
