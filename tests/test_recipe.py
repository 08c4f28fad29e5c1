import textwrap

import pytest

from moalign.config.yaml_source import YamlSource, apply_override, parse_override, parse_yaml
from moalign.errors import UserError
from moalign.recipe import RecipeError, load_recipe


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def recipe_error(path) -> str:
    """The message of the :class:`RecipeError` that loading ``path`` raises."""
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def test_valid_recipe_resolves_defaults(tmp_path):
    path = write(
        tmp_path,
        """
        name: demo
        stages:
          - test_echo: {learning_rate: 3.0e-4}
          - test_echo
        """,
    )
    recipe = load_recipe(path)
    assert recipe.model == "builtin:smollm2-135m-instruct"
    assert [s.type for s in recipe.stages] == ["test_echo", "test_echo"]
    assert recipe.stages[0].config.learning_rate == 3.0e-4
    assert recipe.stages[1].config.per_device_train_batch_size == 2
    resolved = recipe.to_yaml()
    assert "per_device_train_batch_size: 2" in resolved and "seed: 0" in resolved


def test_typo_in_key_names_file_line_path_and_suggestion(tmp_path):
    path = write(
        tmp_path,
        """
        name: demo
        stages:
          - test_echo:
              lerning_rate: 1.0e-5
        """,
    )
    msg = recipe_error(path)
    assert f"{path}:5: stages[0].test_echo.lerning_rate: unknown key (did you mean 'learning_rate'?)" in msg


def test_wrong_type_names_key_path_expected_and_value(tmp_path):
    path = write(tmp_path, "name: demo\nseed: many\nstages:\n  - test_echo: {per_device_train_batch_size: two}\n")
    msg = recipe_error(path)
    assert f"{path}:2: seed: Input should be a valid integer" in msg and "(got 'many')" in msg
    assert f"{path}:4: stages[0].test_echo.per_device_train_batch_size: Input should be a valid integer" in msg


def test_unknown_stage_and_top_level_key(tmp_path):
    path = write(tmp_path, "name: demo\nmodle: x\nstages:\n  - test_ecko: {}\n")
    msg = recipe_error(path)
    assert "modle: unknown key (did you mean 'model'?)" in msg
    assert "stages[0].test_ecko: unknown stage 'test_ecko' (did you mean 'test_echo'?)" in msg


def test_stage_item_must_be_a_one_key_mapping(tmp_path):
    path = write(tmp_path, "name: demo\nstages:\n  - {test_echo: {}, other: {}}\n")
    with pytest.raises(RecipeError, match=r"stages\[0\]: expected a stage name or a one-key mapping"):
        load_recipe(path)


def test_missing_name_and_bad_name(tmp_path):
    with pytest.raises(RecipeError, match="name: Field required"):
        load_recipe(write(tmp_path, "seed: 1\n"))
    with pytest.raises(RecipeError, match="name: String should match pattern"):
        load_recipe(write(tmp_path, "name: ../escape\n"))


def test_duplicate_key_and_syntax_error_have_line_numbers(tmp_path):
    with pytest.raises(UserError, match=r"recipe.yaml:3: duplicate key 'seed'"):
        load_recipe(write(tmp_path, "name: a\nseed: 1\nseed: 2\n"))
    with pytest.raises(UserError, match=r"recipe.yaml:3: invalid YAML: .*flow sequence started at line 2"):
        load_recipe(write(tmp_path, "name: a\nseed: [1, 2\n"))
    with pytest.raises(UserError, match="a recipe must be a YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_set_overrides_nested_list_and_new_keys(tmp_path):
    path = write(tmp_path, "name: demo\nstages:\n  - test_echo: {learning_rate: 1.0e-5}\n")
    recipe = load_recipe(
        path, ["stages.0.test_echo.learning_rate=2e-4", "seed=7", "stages.0.test_echo.note=hello world"]
    )
    assert recipe.seed == 7
    assert recipe.stages[0].config.learning_rate == pytest.approx(2e-4)
    assert recipe.stages[0].config.note == "hello world"


def test_set_errors_point_at_the_override(tmp_path):
    path = write(tmp_path, "name: demo\nstages:\n  - test_echo: {}\n")
    with pytest.raises(RecipeError, match=r"--set stages.0.test_echo.lr=1: stages\[0\].test_echo.lr: unknown key"):
        load_recipe(path, ["stages.0.test_echo.lr=1"])
    with pytest.raises(UserError, match="index 3 is out of range"):
        load_recipe(path, ["stages.3.test_echo.learning_rate=1"])
    with pytest.raises(UserError, match="--set expects KEY=VALUE"):
        load_recipe(path, ["seed"])


def test_parse_override_uses_yaml_types():
    assert parse_override("a.b=true") == (("a", "b"), True)
    assert parse_override("stages.1.x=[1, 2]") == (("stages", 1, "x"), [1, 2])
    assert parse_override("k=") == (("k",), "")


def test_apply_override_creates_missing_mappings():
    src = YamlSource(data={"a": 1}, name="x")
    apply_override(src, "b.c.d=3")
    assert src.data == {"a": 1, "b": {"c": {"d": 3}}}
    assert src.where(("b", "c", "d")) == "--set b.c.d=3"


def test_line_map_points_at_keys_and_items():
    src = parse_yaml("name: a\nstages:\n  - x:\n      k: 1\n  - y\n", "r.yaml")
    assert src.where(("stages", 0, "x", "k")) == "r.yaml:4"
    assert src.where(("stages", 1)) == "r.yaml:5"
    assert src.where(("stages", 1, "missing")) == "r.yaml:5"


PROFILED = """
name: demo
seed: 1
stages:
  - test_echo: {learning_rate: 1.0e-5, note: base}
profiles:
  quick: [stages.0.test_echo.learning_rate=3e-4, seed=5]
"""


def test_profile_applies_its_overrides_before_set(tmp_path):
    path = write(tmp_path, PROFILED)
    assert load_recipe(path).stages[0].config.learning_rate == pytest.approx(1e-5)
    recipe = load_recipe(path, ["seed=9"], profile="quick")
    assert recipe.stages[0].config.learning_rate == pytest.approx(3e-4)
    assert recipe.seed == 9  # --set wins over the profile
    assert recipe.stages[0].config.note == "base"


def test_several_profiles_apply_in_order(tmp_path):
    path = write(tmp_path, PROFILED + "  later: [seed=6, stages.0.test_echo.note=later]\n")
    recipe = load_recipe(path, profile=["quick", "later"])
    assert (recipe.seed, recipe.stages[0].config.note) == (6, "later")
    assert recipe.stages[0].config.learning_rate == pytest.approx(3e-4)


def test_unknown_or_malformed_profile_is_a_recipe_error(tmp_path):
    path = write(tmp_path, PROFILED)
    with pytest.raises(RecipeError, match="unknown profile 'quik'.*did you mean 'quick'.*has: quick"):
        load_recipe(path, profile="quik")
    path = write(tmp_path, PROFILED + "  broken: stages.0.test_echo.note=x\n")
    with pytest.raises(RecipeError, match=r"profiles.broken: expected a list"):
        load_recipe(path, profile="broken")
    with pytest.raises(RecipeError, match=r"recipe.yaml:8: profiles.broken: Input should be a valid list"):
        load_recipe(path)  # an invalid profile is an error even when unused
