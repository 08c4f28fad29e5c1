import pytest

from moalign.data import dimensions as D
from moalign.tags import parse_tags


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


def test_spread_tags_moves_each_dimension_by_its_own_stride():
    # brevity (1st alphabetically) moves by shift, structure (2nd) by 2 * shift, wrapping 5 -> 1
    assert D.spread_tags("<brevity 2><structure 5> Hi", 0) == "<brevity 2><structure 5> Hi"
    assert D.spread_tags("<brevity 2><structure 5> Hi", 1) == "<brevity 3> <structure 2> Hi"
    assert D.spread_tags("<brevity 5> Hi", 1) == "<brevity 1> Hi"
    assert D.spread_tags("Hi", 3) == "Hi"
    # five consecutive shifts ask for every level of each dimension
    levels = [parse_tags(D.spread_tags("<brevity 4><structure 1> Hi", j))[1] for j in range(5)]
    assert sorted(t["brevity"] for t in levels) == [1, 2, 3, 4, 5]
    assert sorted(t["structure"] for t in levels) == [1, 2, 3, 4, 5]


def test_spread_requests_add_the_extra_levels_after_the_spread():
    base = [D.spread_tags("<brevity 2><structure 5> Hi", j) for j in range(5)]
    requests = D.spread_requests("<brevity 2><structure 5> Hi", 5, {"brevity": {5: 2, 1: 1}})
    assert requests[:5] == base
    # shifts 5, 6, 7 move structure by 10, 12, 14 (5, 2, 4); brevity is set, levels in order
    assert [parse_tags(r)[1] for r in requests[5:]] == [
        {"brevity": 1, "structure": 5},
        {"brevity": 5, "structure": 2},
        {"brevity": 5, "structure": 4},
    ]
    assert all(parse_tags(r)[0] == "Hi" for r in requests)
    # a prompt without the dimension's tag (or without tags) gets the spread only
    assert D.spread_requests("<structure 3> Hi", 2, {"brevity": {5: 3}}) == ["<structure 3> Hi", "<structure 5> Hi"]
    assert D.spread_requests("Hi", 2, {"brevity": {5: 3}}) == ["Hi", "Hi"]
    assert D.spread_requests("<brevity 1> Hi", 3) == [D.spread_tags("<brevity 1> Hi", j) for j in range(3)]


def test_sentence_prefixes_keep_the_longest_cut_of_each_other_brevity_level():
    first = "Tides are caused by the Moon."  # 6 words: brevity 5
    second = " " + words(12) + "."  # 18 words in all: brevity 4
    third = " " + words(20) + "!"  # 39 words: brevity 3
    text = first + second + third + " " + words(30) + "."  # 70 words in one paragraph: brevity 2, structure 1
    prefixes = D.sentence_prefixes(text)
    assert prefixes == [first, first + second, first + second + third]
    assert [D.brevity_level(p) for p in prefixes] == [5, 4, 3]
    # a cut that changes the layout (two paragraphs -> one) is left out
    assert D.sentence_prefixes(first + "\n\n" + words(30) + ".") == []
    # a response cut off mid-sentence also gives its longest finished prefix at its own level
    cut = text + " " + words(5)
    assert D.sentence_prefixes(cut) == prefixes
    assert D.sentence_prefixes(cut, cut_off=True) == [*prefixes, text]
    assert D.brevity_level(text) == D.brevity_level(cut) == 2


def test_sentence_prefixes_never_end_on_a_header_or_a_colon_and_skip_code():
    # cuts after "here." keep; after "## Causes" (a header) and "pulls:" they would be no answers
    text = "First short sentence here.\n## Causes\nThe Moon pulls:\n" + words(20) + "."
    assert D.sentence_prefixes(text) == ["First short sentence here."]
    assert D.sentence_prefixes("One. Two.\n```\ncode\n```") == []


def test_spelled_chat_template_renders_tags_as_spell_out_tags_does(tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    plain = tokenizer.apply_chat_template([{"role": "user", "content": "X"}], tokenize=False)
    tokenizer.chat_template = D.spelled_chat_template(tokenizer.chat_template)
    for prompt in ("<brevity 5> <structure 3> Explain tides.", "<structure 1>Why? Say 'hi'.", "No tags."):
        chat = [{"role": "user", "content": prompt}]
        rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert rendered == plain.replace("X", D.spell_out_tags(prompt)) + "<|im_start|>assistant\n"
    with pytest.raises(ValueError, match="does not read"):
        D.spelled_chat_template("{{ messages[0].content }}")


def test_layout_variants_lay_the_same_sentences_out_at_every_other_structure_level():
    text = "Tides rise twice a day. The Moon pulls the sea.\n\nThe Sun pulls less. Coasts flood and drain."
    variants = D.layout_variants(text)  # two paragraphs: level 2
    assert [D.structure_level(v) for v in variants] == [1, 3, 4, 5]
    assert all(v.endswith("Coasts flood and drain.") for v in variants)
    assert variants[0] == "Tides rise twice a day. The Moon pulls the sea. The Sun pulls less. Coasts flood and drain."
    items = "- The Moon pulls the sea.\n- The Sun pulls less.\n- Coasts flood and drain."
    assert variants[1] == "Tides rise twice a day.\n\n" + items
    assert variants[3].startswith("## Overview\n\nTides rise twice a day.\n\n## Key points\n\n- The Moon")
    # the words are the response's: only header words are added
    assert D.tf.word_count(variants[2]) == D.tf.word_count(text) + 2


def test_layout_variants_only_for_prose_of_four_sentences_or_more():
    assert D.layout_variants("One. Two. Three.") == []
    assert D.layout_variants("Intro.\n\n- one\n- two\n\nMore. Text.") == []  # already a list
    assert D.layout_variants("One. Two. Three. Four.\n```\ncode\n```") == []
