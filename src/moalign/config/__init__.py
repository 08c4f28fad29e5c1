"""Typed, strict configuration: recipes, overrides and the base model every config derives from."""

from moalign.config.base import StrictModel
from moalign.config.recipe import ObjectiveConfig, Recipe, RecipeError, StageSpec, load_recipe

__all__ = ["ObjectiveConfig", "Recipe", "RecipeError", "StageSpec", "StrictModel", "load_recipe"]
