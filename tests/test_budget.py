"""Token budgets: the shared estimator helpers, and a stage's declared budget and data check in the dry run."""

from pathlib import Path

from moalign.budget import Budget, sampling_budget, training_steps
from moalign.config import StrictModel
from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.plan import plan_recipe
from moalign.recipe import validate_recipe
from moalign.stages import STAGES, StageResult, register_stage


class DeclaredConfig(StrictModel):
    dataset: str
    steps: int = 5


def two_lines_at_least(config: DeclaredConfig, tag_dimensions) -> None:
    if len(Path(config.dataset).read_text().splitlines()) < 2:
        raise UserError("one line is not enough", source=config.dataset)


if "test_declared" not in STAGES:

    @register_stage(
        "test_declared",
        DeclaredConfig,
        budget=lambda config: Budget(config.steps, 2, 10, "generated tokens", first_step=3),
        data_check=two_lines_at_least,
    )
    def _run_declared(ctx, config) -> StageResult:
        return StageResult(model=ctx.model)


def test_steps_are_max_steps_or_epochs_over_the_records():
    assert training_steps(7, 100, 3.0, 8) == 7
    assert training_steps(-1, 100, 3.0, 8) == 38  # ceil(300 / 8)
    assert training_steps(-1, None, 3.0, 8) is None


def test_sampling_budget_is_one_pass_over_prompts_times_samples():
    class BestOfN:
        num_prompts, num_generations, max_new_tokens = 8, 3, 20

    budget = sampling_budget(BestOfN())
    assert (budget.steps, budget.sequences, budget.tokens, budget.total, budget.first_step) == (1, 24, 20, 480, 0)
    BestOfN.extra_level_samples = {"brevity": {5: 2, 4: 1}, "structure": {1: 1}}
    assert sampling_budget(BestOfN()).sequences == 8 * (3 + 4)  # as if every prompt had both tags


def test_the_dry_run_uses_what_a_stage_declares(tmp_path):
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("a\n")
    two.write_text("a\nb\n")
    stages = [{"test_declared": {"dataset": str(two)}}, {"test_declared": {"dataset": str(one), "steps": 1}}]
    plan = plan_recipe(validate_recipe(YamlSource(data={"name": "d", "stages": stages}, name="<test>")))
    assert [s.budget.total for s in plan.stages] == [5 * 2 * 10, 1 * 2 * 10]
    assert plan.problems == [f"02-test_declared.dataset: {one}: one line is not enough"]
