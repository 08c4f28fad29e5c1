"""Seed 002 figure 6: a pair of dimensions steered together is scored on every swept dimension."""

from __future__ import annotations

import sys

import pytest

from moalign.eval.controllability import ControllabilityConfig, controllability
from moalign.eval.generations import CachedGeneration, GenerationRun
from moalign.generation import SamplingConfig
from moalign.tags import parse_tags


def canned_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in policy that obeys brevity only: 12 words at brevity 1, 2 words at brevity 5 (or untagged)."""

    def fake_generate(spec, prompts, sampling, **kwargs):
        words = [12 if parse_tags(p)[1].get("brevity") == 1 else 2 for p in prompts]
        responses = [CachedGeneration(text=" ".join(["word"] * n), num_tokens=n) for n in words]
        return GenerationRun(responses=responses, fingerprint="fake", cached=0, generated_tokens=0, seconds=1.0)

    monkeypatch.setattr(sys.modules["moalign.eval.controllability"], "cached_generate", fake_generate)


def test_pair_combinations_score_every_swept_dimension(monkeypatch, tmp_path):
    canned_responses(monkeypatch)
    scorer = tmp_path / "words.py"
    scorer.write_text("def count(prompts, completions, **columns):\n    return [len(c.split()) for c in completions]\n")
    config = ControllabilityConfig(
        dimensions=["brevity", "structure", "helpfulness"],
        intensities=[1, 5],
        num_prompts=2,
        measure={"helpfulness": {"python": {"function": f"{scorer}:count"}}},
    )
    result = controllability(
        "fake", ["Name a colour.", "Say hi."], config, SamplingConfig(), cache=None, progress=False
    )
    assert [p["dimensions"] for p in result["pairs"]] == [
        ["brevity", "structure"],
        ["brevity", "helpfulness"],
        ["structure", "helpfulness"],
    ]
    for pair in result["pairs"]:
        for combo in pair["combinations"]:
            assert set(combo["scores"]) == {"brevity", "structure", "helpfulness"}
            # helpfulness is measured as the word count, whichever pair is steered
            expected = 12 if combo["tags"].get("brevity") == 1 else 2
            assert combo["scores"]["helpfulness"] == expected
    # every response comes back with the levels measured in it (helpfulness: the word count)
    assert len(result["samples"]) == 2 * 3 * 2 + 3 * 4 * 2
    for sample in result["samples"]:
        assert sample["levels"]["helpfulness"] == len(sample["response"].split())
        assert parse_tags(sample["prompt"])[1] == sample["tags"]
    # steering structure alone leaves the untagged brevity at the short answer's level
    structure_pair = result["pairs"][2]["combinations"]
    assert {c["scores"]["brevity"] for c in structure_pair} == {
        result["pairs"][0]["combinations"][-1]["scores"]["brevity"]
    }
