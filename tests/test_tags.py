import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moalign.errors import UserError
from moalign.tags import (
    DEFAULT_TAG_DIMENSIONS,
    TagError,
    check_dimensions,
    format_tags,
    parse_tags,
    sample_tags,
    tag_column,
    tag_dataset,
    tag_records,
    tags_from_columns,
)

DIMS = {"helpfulness": (1, 5), "honesty": (1, 5), "harmless": (1, 2), "brevity": (1, 5), "structure": (1, 5)}


def test_parse_splits_tags_and_resolves_max():
    assert parse_tags("<helpfulness 4> <harmless max> Explain DNS.") == (
        "Explain DNS.",
        {"helpfulness": 4, "harmless": 2},
    )
    assert parse_tags("<honesty 1><helpfulness 5>\nHi") == ("Hi", {"honesty": 1, "helpfulness": 5})
    assert parse_tags("  < honesty   3 >  spaced") == ("spaced", {"honesty": 3})
    assert parse_tags("<helpfulness 5>") == ("", {"helpfulness": 5})


def test_untagged_text_is_returned_unchanged():
    for text in ["  plain prompt", "<div>hello</div>", "<b>bold</b> text", "a <helpfulness 4> inside", "", "<"]:
        assert parse_tags(text) == (text, {})
    # tags end where ordinary text starts, even if that text begins with '<'
    assert parse_tags("<helpfulness 2> <div>x</div>") == ("<div>x</div>", {"helpfulness": 2})


def test_declared_dimensions_with_their_ranges():
    assert parse_tags("<brevity 5> <structure 1> Write a list.", DIMS) == (
        "Write a list.",
        {"brevity": 5, "structure": 1},
    )
    assert parse_tags("<level 0> <level2 -1> x", {"level": (0, 3), "level2": (-2, 2)}) == (
        "x",
        {"level": 0, "level2": -1},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<helpfulnes 4> Hi", r"unknown dimension 'helpfulnes' \(did you mean 'helpfulness'\?\)"),
        ("<tone 2> Hi", r"unknown dimension 'tone'.*known: helpfulness, honesty, harmless, brevity, structure"),
        ("<helpfulness 6> Hi", r"intensity 6 is outside \[1, 5\]"),
        ("<harmless 0> Hi", r"intensity 0 is outside \[1, 2\]"),
        ("<helpfulness 4 Explain", r"unclosed bracket"),
        ("<helpfulness 4", r"unclosed bracket"),
        ("<helpfulness> Hi", r"expected an intensity in \[1, 5\] or 'max'"),
        ("<helpfulness high> Hi", r"expected an intensity"),
        ("<helpfulness 2> <helpfulness 3> Hi", r"dimension 'helpfulness' is tagged twice"),
    ],
)
def test_malformed_tags_are_clear_errors(text, message):
    with pytest.raises(TagError, match=message):
        parse_tags(text)


def test_tag_error_is_a_user_error():
    assert issubclass(TagError, UserError)


def test_format_tags():
    assert (
        format_tags({"helpfulness": 4, "harmless": "max"}, "Explain DNS.")
        == "<helpfulness 4> <harmless max> Explain DNS."
    )
    assert format_tags({"honesty": 2}) == "<honesty 2>"
    assert format_tags({}, "x") == "x"
    with pytest.raises(TagError, match="outside"):
        format_tags({"helpfulness": 9}, "x", DEFAULT_TAG_DIMENSIONS)
    with pytest.raises(TagError, match="unknown tag dimension 'tone'"):
        format_tags({"tone": 3}, "x", DEFAULT_TAG_DIMENSIONS)
    with pytest.raises(TagError, match="must be an int or 'max'"):
        format_tags({"honesty": 2.5}, "x")


@st.composite
def tag_maps(draw):
    names = draw(st.lists(st.sampled_from(sorted(DIMS)), unique=True, max_size=len(DIMS)))
    return {name: draw(st.integers(*DIMS[name])) for name in names}


prompts = st.text().filter(lambda t: not t[:1].isspace() and not t.startswith("<"))


@given(tags=tag_maps(), text=prompts)
def test_format_is_the_inverse_of_parse(tags, text):
    assert parse_tags(format_tags(tags, text), DIMS) == (text, tags)


def test_check_dimensions():
    assert check_dimensions({"a": [1, 3]}) == {"a": (1, 3)}
    with pytest.raises(ValueError, match="empty intensity range"):
        check_dimensions({"a": (3, 1)})
    with pytest.raises(ValueError, match="must be an identifier"):
        check_dimensions({"two words": (1, 2)})
    with pytest.raises(ValueError, match="must be an identifier"):
        check_dimensions({"max": (1, 2)})


def test_sample_tags_draws_one_to_three_dimensions_in_range():
    rng = random.Random(0)
    counts = Counter()
    for _ in range(300):
        tags = sample_tags(rng, DIMS)
        counts[len(tags)] += 1
        for name, value in tags.items():
            assert DIMS[name][0] <= value <= DIMS[name][1]
    assert set(counts) == {1, 2, 3}
    assert sample_tags(random.Random(1), {"only": (1, 2)}, 1, 3).keys() == {"only"}


def test_tag_records_is_seeded_and_adds_tag_columns():
    records = [{"prompt": f"question {i}", "id": i} for i in range(50)]
    a = tag_records(records, DIMS, seed=3)
    assert a == tag_records(records, DIMS, seed=3)
    assert a != tag_records(records, DIMS, seed=4)
    for rec in a:
        text, tags = parse_tags(rec["prompt"], DIMS)
        assert text == f"question {rec['id']}"
        assert 1 <= len(tags) <= 3
        assert {name: rec[tag_column(name)] for name in DIMS} == {name: tags.get(name) for name in DIMS}
    # the draw depends on (seed, index) only: the same record at the same index gets the same tags
    assert tag_records(records[:10], DIMS, seed=3) == a[:10]


def test_already_tagged_prompts_keep_their_tags():
    out = tag_records([{"prompt": "<honesty 5> Be frank."}], seed=0)
    assert out[0]["prompt"] == "<honesty 5> Be frank."
    assert out[0]["tag_honesty"] == 5 and out[0]["tag_helpfulness"] is None


def test_tag_dataset_matches_tag_records():
    from datasets import Dataset

    records = [{"prompt": f"p{i}"} for i in range(12)]
    ds = tag_dataset(Dataset.from_list(records), DIMS, seed=7)
    assert ds.to_list() == tag_records(records, DIMS, seed=7)


def test_tags_from_columns():
    columns = {"tag_helpfulness": [4, None], "tag_harmless": [None, 1], "other": [1, 2]}
    assert tags_from_columns(columns, DEFAULT_TAG_DIMENSIONS, 2) == [{"helpfulness": 4}, {"harmless": 1}]
