import pytest

from moalign.errors import UserError
from moalign.report.fronts import Method, fronts
from moalign.report.page import cost_section


def _methods():
    a = Method(name="a", source="x", points={"w0": {"f": 1.0, "g": 3.0}, "w1": {"f": 3.0, "g": 1.0}})
    b = Method(name="b", source="y", points={"s0": {"f": 2.0, "g": 2.0}, "s1": {"f": 1.0, "g": 1.0}, "s2": {"f": 2.0}})
    return [a, b]


def test_fronts_default_to_the_minimum_reference_and_leave_out_points_missing_an_objective():
    result = fronts(_methods())
    assert result["objectives"] == ["f", "g"]
    assert result["reference"] == [1.0, 1.0] and result["reference_source"] == "minimum over all points"
    a, b = result["methods"]
    # a: boxes [1,1]-[1,3] (empty) and [1,1]-[3,1] (empty): 0; b: [1,1]-[2,2] = 1
    assert a["hypervolume"] == 0.0 and b["hypervolume"] == 1.0
    assert [p["label"] for p in b["points"]] == ["s0", "s1"] and [p["on_front"] for p in b["points"]] == [True, False]
    assert result["warnings"] == ["b/s2: no score for every objective of ['f', 'g']; left out"]
    assert a["cost"]["policies_trained"] == 0 and a["cost"]["wall_time_s"] is None


def test_a_given_reference_needs_one_value_per_objective():
    assert fronts(_methods(), reference=[0, 0])["methods"][0]["hypervolume"] == 1 * 3 + 2 * 1  # 5
    with pytest.raises(UserError, match="--reference has 3 values for 2 objectives"):
        fronts(_methods(), reference=[0, 0, 0])
    with pytest.raises(UserError, match="no evaluated points"):
        fronts([])


def test_the_cost_table_of_a_run_totals_its_training_stages():
    stages = [
        {"stage": "01-sft", "type": "sft", "wall_time_s": 3600, "cpu_time_s": 7200, "tokens_trained": 500},
        {"stage": "02-eval", "type": "eval", "wall_time_s": 1800, "cpu_time_s": 1800, "tokens_generated": 40},
    ]
    html = cost_section(None, stages)
    total = html[html.index("total (training)") :]
    assert (
        '<td class="num">1.0000</td><td class="num">2.0000</td><td class="num">–</td><td class="num">500</td>' in total
    )


def test_an_evaluation_with_controllability_adds_the_tag_combinations_as_a_method(tmp_path):
    import json

    from moalign.eval.evaluate import EVAL_KIND
    from moalign.report.fronts import collect_methods

    combos = [
        {"tags": {"brevity": 1, "structure": 1}, "scores": {"brevity": 1.2, "structure": 1.5}},
        {"tags": {"brevity": 5, "structure": 1}, "scores": {"brevity": 4.1, "structure": 1.4}},
    ]
    metrics = {
        "kind": EVAL_KIND,
        "models": {
            "reference": {"role": "reference", "spec": "base", "objectives": {"brevity": 0.1, "structure": 0.1}},
            "tagged": {"role": "candidate", "spec": "nowhere", "objectives": {"brevity": 0.5, "structure": 0.7}},
        },
        "controllability": {"tagged": {"pairs": [{"dimensions": ["brevity", "structure"], "combinations": combos}]}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    plain, tags = collect_methods(tmp_path)
    assert plain.points == {"tagged": {"brevity": 0.5, "structure": 0.7}}  # the reference is not a point
    assert tags.name == f"{tmp_path.name}:tagged tags"
    assert tags.points == {
        "<brevity 1> <structure 1>": {"brevity": 1.2, "structure": 1.5},
        "<brevity 5> <structure 1>": {"brevity": 4.1, "structure": 1.4},
    }
    assert plain.runs == [] and tags.runs == []  # 'nowhere' was trained by no run here
