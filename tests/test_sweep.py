"""MORLHF sweeps, and the scaled-down comparison: a sweep, a soup of its single-objective policies, the Pareto view."""

import json

import pytest
from typer.testing import CliRunner

from moalign.cli import app
from moalign.config.yaml_source import YamlSource
from moalign.eval.pareto import hypervolume
from moalign.models import load_causal_lm
from moalign.models.soup import soup_models
from moalign.pipeline import run_recipe
from moalign.recipe import RecipeError, validate_recipe
from moalign.run_dir import SWEEP_FILE
from moalign.sweep import weighted_recipe

OBJECTIVES = [
    {"name": "chars", "scorer": {"length": {"unit": "characters"}}},
    {"name": "concise", "scorer": {"length": {"unit": "words", "target": 0, "penalty": "over"}}},
]


def _recipe(**data):
    return validate_recipe(
        YamlSource(data={"name": "s", "model": "m", "objectives": OBJECTIVES, **data}, name="t.yaml")
    )


def test_each_sweep_point_reweights_the_objectives_in_order():
    recipe = _recipe(sweep={"weights": [[1, 0], [0.25, 0.75]]}, stages=[{"test_echo": {}}])
    point = weighted_recipe(recipe, 1, recipe.sweep.weights[1])
    assert point.name == "w1" and point.sweep is None
    assert [o.weight for o in point.objectives] == [0.25, 0.75]
    assert [o.weight for o in recipe.objectives] == [1.0, 1.0]  # the recipe itself is untouched


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sweep": {"weights": [[1, 0], [1]]}}, r"sweep\.weights\[1\]: 1 weights for 2 objectives"),
        ({"sweep": {"weights": []}}, r"sweep\.weights: List should have at least 1 item"),
        (
            {"sweep": {"weights": [[1, 0]]}, "objectives": []},
            "a sweep sets the objectives' weights: the recipe needs objectives",
        ),
    ],
)
def test_bad_sweeps_are_refused_with_their_key(extra, message):
    with pytest.raises(RecipeError, match=message):
        _recipe(**extra)


def test_a_sweep_runs_the_stages_once_per_weight_vector(tmp_path):
    recipe = _recipe(output_dir=str(tmp_path), sweep={"weights": [[1, 0], [0, 1]]}, stages=[{"test_echo": {}}])
    run = run_recipe(recipe)
    sweep = json.loads((run.root / SWEEP_FILE).read_text())
    assert sweep["points"] == [
        {"run": "w0", "weights": {"chars": 1.0, "concise": 0.0}},
        {"run": "w1", "weights": {"chars": 0.0, "concise": 1.0}},
    ]
    for i in (0, 1):
        assert (run.root / f"w{i}" / "01-test_echo" / "echo.txt").read_text() == "m"
        resolved = (run.root / f"w{i}" / "config.resolved.yaml").read_text()
        assert "sweep: null" in resolved and f"name: w{i}" in resolved
    assert not (run.root / "pareto.json").exists()  # nothing was evaluated


def test_morlhf_sweep_and_rewarded_soup_give_pareto_fronts_and_a_cost_table(tiny_llama_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Say hi", "Name a colour"]))
    evaluation = {
        "dataset": str(prompts),
        "split": "train",
        "num_samples": 2,
        "max_new_tokens": 6,
        "perplexity": False,
        "cache": False,
        "bootstrap_resamples": 10,
    }
    rwr = {
        "dataset": str(prompts),
        "per_device_train_batch_size": 1,
        "num_generations": 2,
        "max_completion_length": 6,
        "max_steps": 1,
        "learning_rate": 1e-3,
        "bf16": False,
    }
    base = {"model": str(tiny_llama_dir), "output_dir": str(tmp_path / "runs"), "objectives": OBJECTIVES}
    morlhf = run_recipe(
        validate_recipe(
            YamlSource(
                data={
                    **base,
                    "name": "morlhf",
                    "sweep": {"weights": [[1, 0], [0, 1]]},
                    "stages": [{"rwr": rwr}, {"eval": evaluation}],
                },
                name="t",
            )
        )
    )
    policies = [str(morlhf.root / f"w{i}" / "01-rwr" / "model") for i in (0, 1)]
    soups = [soup_models(policies, [w, 1 - w], tmp_path / f"soup{int(w * 100)}") for w in (0.25, 0.75)]
    soup_eval = run_recipe(
        validate_recipe(
            YamlSource(
                data={**base, "name": "rsoup", "stages": [{"eval": {**evaluation, "models": [str(s) for s in soups]}}]},
                name="t",
            )
        )
    )

    stage = json.loads((morlhf.root / "w0" / "01-rwr" / "stage.json").read_text())
    assert stage["tokens_generated"] > 0 and stage["tokens_trained"] > stage["tokens_generated"]
    assert stage["gpu_time_s"] is None  # no CUDA here
    assert load_causal_lm(str(soups[0])).config.num_hidden_layers == 2
    sweep_front = json.loads((morlhf.root / "pareto.json").read_text())  # written by the sweep itself
    assert [p["label"] for p in sweep_front["methods"][0]["points"]] == ["w0", "w1"]
    assert "Pareto fronts" in (morlhf.root / "report.html").read_text()
    run_report = (morlhf.root / "w0" / "report.html").read_text()  # built by the eval stage: rwr's cost is in it
    assert "<td>01-rwr</td>" in run_report[run_report.index('id="cost"') :]

    out = tmp_path / "compare"
    result = CliRunner().invoke(
        app, ["pareto", str(morlhf.root), str(soup_eval.root), "--reference", "0,-10", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["objectives"] == ["chars", "concise"] and pareto["reference"] == [0.0, -10.0]
    by_name = {m["name"]: m for m in pareto["methods"]}
    assert set(by_name) == {"morlhf", "rsoup"}
    assert [p["label"] for p in by_name["rsoup"]["points"]] == ["soup25", "soup75"]
    for m in pareto["methods"]:
        points = [p["values"] for p in m["points"]]
        assert m["hypervolume"] == pytest.approx(hypervolume(points, [0, -10]), abs=1e-6)
        assert any(p["on_front"] for p in m["points"])
    # the soups' cost is their two ingredients' training, as the sweep's is its two runs'
    morlhf_cost, soup_cost = by_name["morlhf"]["cost"], by_name["rsoup"]["cost"]
    assert morlhf_cost["policies_trained"] == soup_cost["policies_trained"] == 2
    assert soup_cost["tokens_trained"] == morlhf_cost["tokens_trained"] > 0
    assert soup_cost["wall_time_s"] > morlhf_cost["wall_time_s"]  # plus the soups' own time
    html = (out / "report.html").read_text()
    assert html.count('alt="Pareto fronts"') == 1 and "Policies trained" in html and "rsoup" in html
