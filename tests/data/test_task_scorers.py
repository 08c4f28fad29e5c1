import math

import moalign.rewards.scorers.dimensions  # noqa: F401
import moalign.rewards.scorers.verifier  # noqa: F401
from moalign.rewards.scorers.base import SCORERS


def build(name, **config):
    d = SCORERS.get(name)
    return d.build(d.config_cls(**config))


def test_verifier_share_satisfied_nan_without_constraints_and_partial_mode():
    constraints = [[{"kind": "lowercase"}, {"kind": "word_count", "max_words": 2}], [], None, '[{"kind": "no_commas"}]']
    completions = ["all lower but long", "x", "y", "a, b"]
    strict = build("verifier")(["p"] * 4, completions, constraints=constraints)
    assert strict[0] == 0.5 and math.isnan(strict[1]) and math.isnan(strict[2]) and strict[3] == 0.0
    partial = build("verifier", partial=True)(["p"] * 4, completions, constraints=constraints)
    assert partial[0] == (1.0 + 2 / 4) / 2 and partial[3] == 0.5
    assert all(math.isnan(s) for s in build("verifier")(["p"], ["x"]))  # no constraints column


def test_dimension_scorers_match_nan_and_level_modes():
    completions = ["Short answer.", "## A\n- a\n- b\n\n## B\ntext"]
    brevity = build("brevity")(["p", "p"], completions, tag_brevity=[5, None])
    assert brevity[0] == 1.0 and math.isnan(brevity[1])
    structure = build("structure")(["p", "p"], completions, tags=[{"structure": 1}, {"structure": 5}])
    assert structure == [1.0, 1.0]
    levels = build("structure", output="level")(["p", "p"], completions)
    assert levels == [1.0, 5.0]
    assert build("brevity", output="level")(["p"], ["word " * 40]) == [3.0]
    assert all(math.isnan(s) for s in build("brevity")(["p"], ["x"]))
