"""Recipe keys of the reward layer: objectives with typed scorer configs, aggregator, tag dimensions."""

import math
import textwrap

import pytest

from moalign.config.yaml_source import parse_yaml
from moalign.recipe import RecipeError, load_recipe, validate_recipe
from moalign.rewards import MultiObjectiveReward

RECIPE = """
name: demo
objectives:
  - name: brief
    scorer: {length: {unit: words, target: 40, penalty: over}}
    weight: 0.5
    ideal: 0.0
    tag_dimension: brevity
  - name: loops
    scorer: repetition
    ideal: 0.0
aggregator: {soft_chebyshev: {tau: 0.1}}
tag_dimensions:
  helpfulness: [1, 5]
  brevity: [1, 5]
  structure: [1, 5]
"""


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_recipe_objectives_aggregator_and_tag_dimensions(tmp_path):
    recipe = load_recipe(write(tmp_path, RECIPE))
    brief, loops = recipe.objectives
    assert brief.scorer.type == "length" and brief.scorer.config.target == 40 and brief.scorer.config.penalty == "over"
    assert loops.scorer.type == "repetition" and loops.scorer.config.n == 3
    assert recipe.aggregator.type == "soft_chebyshev" and recipe.aggregator.config.tau == 0.1
    assert recipe.tag_dimensions == {"helpfulness": (1, 5), "brevity": (1, 5), "structure": (1, 5)}
    # the resolved YAML loads back to the same recipe
    again = validate_recipe(parse_yaml(recipe.to_yaml(), "resolved.yaml"))
    assert again == recipe
    reward = MultiObjectiveReward.from_recipe(recipe)
    assert reward.names == ["brief", "loops"]
    # both gaps are 0: soft_chebyshev = -tau * log(e^0 + e^0) = -0.1 * log 2
    assert reward(["<brevity 2> Hi"], ["short answer"]) == [pytest.approx(-0.1 * math.log(2))]


def test_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, "name: demo\nobjectives:\n  - {name: words, scorer: length}\n"))
    assert recipe.aggregator.type == "weighted_sum"
    assert set(recipe.tag_dimensions) == {"helpfulness", "honesty", "harmless", "brevity", "structure"}
    assert "aggregator:\n  weighted_sum: {}" in recipe.to_yaml()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: d\nobjectives:\n  - name: a\n    scorer: lenght\n",
            r"recipe.yaml:4: objectives\[0\].scorer.lenght: unknown scorer 'lenght' \(did you mean 'length'\?\)",
        ),
        (
            "name: d\nobjectives:\n  - name: a\n    scorer:\n      length: {unti: words}\n",
            r"recipe.yaml:5: objectives\[0\].scorer.length.unti: unknown key \(did you mean 'unit'\?\)",
        ),
        (
            "name: d\nobjectives:\n  - name: a\n    scorer: length\n    wieght: 2\n",
            r"recipe.yaml:5: objectives\[0\].wieght: unknown key \(did you mean 'weight'\?\)",
        ),
        (
            "name: d\naggregator: {chebychev: {}}\n",
            r"recipe.yaml:2: aggregator.chebychev: unknown aggregator 'chebychev' \(did you mean 'chebyshev'\?\)",
        ),
        (
            "name: d\naggregator: {soft_chebyshev: {tau: -1}}\n",
            r"recipe.yaml:2: aggregator.soft_chebyshev.tau: Input should be greater than 0",
        ),
        (
            "name: d\naggregator: chebyshev\nobjectives:\n  - {name: a, scorer: length}\n",
            r"recipe.yaml:4: objectives\[0\].ideal: aggregator 'chebyshev' needs an ideal value",
        ),
        (
            "name: d\nobjectives:\n  - {name: a, scorer: length, tag_dimension: brevty}\n",
            r"objectives\[0\].tag_dimension: tag dimension 'brevty' is not declared",
        ),
        (
            "name: d\nobjectives:\n  - {name: a, scorer: length}\n  - {name: a, scorer: repetition}\n",
            r"recipe.yaml:4: objectives\[1\].name: objective name 'a' is already used by objectives\[0\]",
        ),
        (
            "name: d\naggregator: moslim\nobjectives:\n  - {name: a, scorer: length, weight: 2}\n",
            r"recipe.yaml:3: objectives: aggregator 'moslim' needs at least one objective with a tag_dimension",
        ),
        (
            "name: d\ntag_dimensions: {brevity: [5, 1]}\n",
            r"recipe.yaml:2: tag_dimensions: Value error, tag dimension 'brevity': empty intensity range",
        ),
        (
            "name: d\nobjectives:\n  - {name: a, scorer: length, normalize: zscore}\n",
            r"objectives\[0\].normalize: Input should be 'batch' or 'group'",
        ),
    ],
)
def test_recipe_errors_name_file_line_and_key_path(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(write(tmp_path, text))


def test_moslim_recipe_checks(tmp_path):
    text = """
    name: d
    aggregator: {moslim: {k: active}}
    objectives:
      - {name: h, scorer: length, tag_dimension: helpfulness, weight: 2}
      - {name: h2, scorer: length, tag_dimension: helpfulness}
    """
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text))
    msg = str(info.value)
    assert "objectives[0].weight: aggregator 'moslim' (seed 002, eq. 11) has no weights" in msg
    assert "objectives[1].tag_dimension: tag dimension 'helpfulness' is already scored by objectives[0]" in msg


def test_set_override_reaches_scorer_config(tmp_path):
    path = write(tmp_path, RECIPE)
    recipe = load_recipe(path, ["objectives.0.scorer.length.target=10", "aggregator={weighted_sum: {}}"])
    assert recipe.objectives[0].scorer.config.target == 10
    assert recipe.aggregator.type == "weighted_sum"


def test_stage_references_in_scorer_configs_resolve_to_earlier_outputs(tmp_path):
    from moalign.rewards import MultiObjectiveReward
    from moalign.run_dir import RunDir
    from moalign.stages.base import StageContext

    recipe = load_recipe(
        write(
            tmp_path,
            "name: d\nobjectives:\n  - {name: w, scorer: {python: {function: 'os.path:join', "
            "kwargs: {extra: 'stage:reward_model/model'}}}}\n",
        )
    )
    run = RunDir(tmp_path / "run")
    (run.root / "01-reward_model" / "model").mkdir(parents=True)
    ctx = StageContext(recipe=recipe, run=run, index=2, stage_type="grpo", model="m", seed=0)
    reward = MultiObjectiveReward.for_stage(ctx)
    assert reward.objectives[0].scorer.config.kwargs == {"extra": str(run.root / "01-reward_model" / "model")}
