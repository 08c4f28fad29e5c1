import pytest

from moalign.data import dimensions as D


def words(n):
    return " ".join(["word"] * n)


@pytest.mark.parametrize(
    ("n", "level"), [(0, 5), (1, 5), (15, 5), (16, 4), (30, 4), (31, 3), (60, 3), (61, 2), (100, 2), (101, 1), (500, 1)]
)
def test_brevity_level_band_edges(n, level):
    assert D.brevity_level(words(n)) == level


def test_brevity_match_is_one_inside_and_decays_in_log2_outside():
    assert D.brevity_match(words(20), 4) == 1.0
    assert D.brevity_match(words(60), 4) == 0.0  # twice the upper bound of 30
    assert D.brevity_match(words(8), 4) == pytest.approx(1 - 1)  # half the lower bound of 16
    assert D.brevity_match(words(12), 4) == pytest.approx(1 - 0.415037, abs=1e-5)  # log2(16/12)
    assert D.brevity_match(words(150), 1) == 1.0
    assert D.brevity_match("", 5) == 0.0


def test_structure_levels():
    assert D.structure_level("Just prose in one paragraph.") == 1
    assert D.structure_level("One.\n\nTwo.") == 2
    assert D.structure_level("Intro:\n- a\n- b") == 3
    assert D.structure_level("Intro:\n1. a\n2) b") == 3
    assert D.structure_level("## A\ntext\n\n## B\ntext") == 4
    assert D.structure_level("**A**\ntext\n\n**B**\ntext") == 4  # bold-only lines are headers here
    assert D.structure_level("## A\n- a\n- b\n\n## B\ntext") == 5
    assert D.structure_level("Prose.\n```\n## not\n- a\n- b\n```") == 1  # code ignored


def test_structure_match():
    assert D.structure_match("## A\n- a\n- b\n\n## B\ntext", 5) == 1.0
    assert D.structure_match("## A\n- a\n- b\n\n## B\ntext", 4) == 0.5
    assert D.structure_match("plain", 5) == 0.0
    assert D.structure_match("   ", 1) == 0.0


@pytest.mark.parametrize("bad", [0, 6, 2.5, True, "3"])
def test_intensity_out_of_range_is_an_error(bad):
    with pytest.raises((ValueError, TypeError)):
        D.brevity_match("text", bad)


def test_requested_intensity_from_columns_and_tags():
    assert D.requested_intensity("brevity", {"tag_brevity": 4}) == 4
    assert D.requested_intensity("brevity", {"brevity": 3}) == 3
    assert D.requested_intensity("brevity", {"tags": {"brevity": 2}}) == 2
    assert D.requested_intensity("structure", {"tags": "<brevity 2><structure 5>"}) == 5
    assert D.requested_intensity("structure", {"tag_structure": None, "tags": {}}) is None
    assert D.requested_intensity("structure", {"tag_structure": float("nan")}) is None


def test_spell_out_tags_replaces_known_tags_with_their_requests():
    spelled = D.spell_out_tags("<brevity 5><structure 3> Explain tides.")
    assert spelled == f"Explain tides. {D.BREVITY_INSTRUCTIONS[5]} {D.STRUCTURE_INSTRUCTIONS[3]}"
    assert D.spell_out_tags("Explain tides.") == "Explain tides."
    # tags of other dimensions are kept, in front
    spelled = D.spell_out_tags("<helpfulness 2><brevity 1> Explain.")
    assert spelled == f"<helpfulness 2> Explain. {D.BREVITY_INSTRUCTIONS[1]}"


def test_every_level_has_an_instruction_naming_its_band():
    for dim in D.DIMENSIONS.values():
        assert set(dim.instructions) == set(D.LEVELS)
    for level, (low, high) in D.BREVITY_BANDS.items():
        assert str(high if high is not None else low - 1) in D.BREVITY_INSTRUCTIONS[level]


def test_relabel_prompt_sets_each_tag_to_the_measured_level():
    forty_words = " ".join(["word"] * 40)  # brevity band 30-60 words: level 3; one paragraph: structure 1
    assert D.relabel_prompt("<brevity 5> <structure 4> Explain tides.", forty_words) == (
        "<brevity 3> <structure 1> Explain tides."
    )
    assert D.relabel_prompt("<brevity 5> Explain tides.", "Tides rise.") == "<brevity 5> Explain tides."
    assert D.relabel_prompt("Explain tides.", forty_words) is None
    assert D.measured_tags("<structure 2> Hi", "- a\n- b") == {"structure": 3}
