"""Every constraint kind: satisfying and violating responses, and the edge cases (empty response,
unicode, code blocks, trailing whitespace)."""

import json

import pytest

from moalign.data import constraints as C
from moalign.errors import UserError

CODE = "Intro line.\n\n```python\n- not a bullet\n## not a header\nx = 1, 2\n```\n"


def score(check, response, **params):
    s, reason = check(response, **params)
    assert 0.0 <= s <= 1.0 and isinstance(reason, str) and reason
    return s


def test_at_least_fifteen_kinds_all_registered_with_instructions_and_samplers():
    assert len(C.CONSTRAINTS) >= 15
    import random

    for name in C.CONSTRAINTS.names():
        kind = C.CONSTRAINTS.get(name)
        params = kind.sample(random.Random(0), {"keywords": ("lava", "magma")})
        text = C.constraint_instruction({"kind": name, **params})
        assert text.endswith((".", "?")) and len(text) > 10
        held_out = C.constraint_instruction({"kind": name, **params}, held_out=True)
        assert held_out.endswith((".", "?")) and len(held_out) > 10
        # another wording, not the same sentence with a word changed: at most half the words shared
        words, other = set(text.lower().split()), set(held_out.lower().split())
        assert len(words & other) <= len(words) / 2, (text, held_out)
        assert name not in kind.conflicts


@pytest.mark.parametrize("name", C.CONSTRAINTS.names())
def test_every_kind_fails_an_empty_or_blank_response(name):
    import random

    params = C.CONSTRAINTS.get(name).sample(random.Random(1), {"keywords": ("lava",)})
    for blank in ("", "   \n\t "):
        result = C.check_constraint(blank, {"kind": name, **params})
        assert result.score == 0.0 and not result.satisfied and result.reason == "empty response"


def test_word_count_bounds_and_partial_credit():
    assert score(C.word_count, "one two three", min_words=2, max_words=3) == 1.0
    assert score(C.word_count, "one two three four five six", max_words=3) == 0.5  # 3/6
    assert score(C.word_count, "one", min_words=4) == 0.25
    # unicode words and contractions/hyphens count once each
    assert score(C.word_count, "Café déjà-vu don't naïve", min_words=4, max_words=4) == 1.0
    assert score(C.word_count, "Привет мир", min_words=2, max_words=2) == 1.0
    # trailing whitespace does not change anything
    assert score(C.word_count, "one two  \n\n  ", min_words=2, max_words=2) == 1.0


def test_sentence_count():
    assert score(C.sentence_count, "It rains. The sun shines! Why?", min_sentences=3, max_sentences=3) == 1.0
    assert score(C.sentence_count, "One. Two. Three. Four.", max_sentences=2) == 0.5
    assert score(C.sentence_count, "Just one sentence", min_sentences=2) == 0.5
    # code blocks are not sentences
    assert score(C.sentence_count, "Look at this.\n```\na. b. c. d.\n```", max_sentences=1) == 1.0


def test_bullet_count_exact():
    three = "Tips:\n- one\n- two\n* three\n"
    assert score(C.bullet_count, three, count=3) == 1.0
    assert score(C.bullet_count, three, count=2) == 0.5
    assert score(C.bullet_count, "no bullets here", count=2) == 0.0
    assert score(C.bullet_count, "• unicode bullet\n• another", count=2) == 1.0
    assert score(C.bullet_count, "**bold line**\n- one", count=1) == 1.0  # bold text is not a bullet
    assert score(C.bullet_count, CODE + "- real", count=1) == 1.0  # bullets in code blocks do not count


def test_paragraph_count():
    two = "First paragraph.\nStill first.\n\n  \nSecond paragraph.\n\n"
    assert score(C.paragraph_count, two, count=2) == 1.0
    assert score(C.paragraph_count, two, count=3) == pytest.approx(2 / 3)
    assert score(C.paragraph_count, "All in one.", count=3) == pytest.approx(1 / 3)


def test_sections_with_markdown_headers():
    text = "## Causes\nHeat.\n\n## Effects\nLava.\n\n### Summary\nDone."
    assert score(C.sections, text, count=3) == 1.0
    assert score(C.sections, text, count=2) == 0.5
    assert score(C.sections, "#hashtag is not a header", count=1) == 0.0
    assert score(C.sections, CODE + "## Real", count=1) == 1.0


def test_include_keywords_whole_words_case_insensitive():
    assert score(C.include_keywords, "LAVA flows from the Crater.", keywords=["lava", "crater"]) == 1.0
    assert score(C.include_keywords, "Lava flows.", keywords=["lava", "crater"]) == 0.5
    assert score(C.include_keywords, "lavatory", keywords=["lava"]) == 0.0  # whole words only
    assert score(C.include_keywords, "Visit the  Nile\nriver.", keywords=["Nile river"]) == 1.0
    assert score(C.include_keywords, "Un café, s'il vous plaît.", keywords=["café"]) == 1.0


def test_keyword_frequency():
    assert score(C.keyword_frequency, "Rain, rain, go away. RAIN!", keyword="rain", min_count=3) == 1.0
    assert score(C.keyword_frequency, "Rain falls.", keyword="rain", min_count=2) == 0.5
    assert score(C.keyword_frequency, "Raining.", keyword="rain", min_count=1) == 0.0


def test_forbidden_words():
    assert score(C.forbidden_words, "A clear answer.", words=["very", "just"]) == 1.0
    assert score(C.forbidden_words, "It is Very good.", words=["very", "just"]) == 0.5
    assert score(C.forbidden_words, "Justice matters.", words=["just"]) == 1.0  # whole words only


def test_placeholders():
    assert score(C.placeholders, "Dear [name], see you at [place].", min_count=2) == 1.0
    assert score(C.placeholders, "Dear [name].", min_count=2) == 0.5
    assert score(C.placeholders, "A [link](https://x.org) is not a placeholder.", min_count=1) == 0.0
    assert score(C.placeholders, "Nom : [prénom]", min_count=1) == 1.0


def test_lowercase_and_uppercase():
    assert score(C.lowercase, "all lower case, ça va?\n") == 1.0
    assert score(C.lowercase, "Almost all lower") == pytest.approx(1 - 1 / 14)
    assert score(C.lowercase, "éCOLE") < 1.0
    assert score(C.lowercase, "数字 123") == 1.0  # no cased letters: nothing to violate
    assert score(C.uppercase, "ALL CAPS, ÉCOLE!  ") == 1.0
    assert score(C.uppercase, "MOSTLY caps") < 1.0
    assert score(C.uppercase, "lower") == 0.0


def test_no_commas():
    assert score(C.no_commas, "No commas here. None at all.") == 1.0
    assert score(C.no_commas, "one, two") == 0.5
    assert score(C.no_commas, "全角，逗号") == 0.5  # full-width comma counts
    assert score(C.no_commas, "```\na, b\n```") < 1.0  # code is part of the response


def test_starts_with_and_ends_with():
    assert score(C.starts_with, "  In short, yes.", phrase="In short,") == 1.0
    assert score(C.starts_with, "in   SHORT, yes.", phrase="In short,") == 1.0
    assert score(C.starts_with, "Yes. In short,", phrase="In short,") == 0.0
    assert score(C.ends_with, "Done. That is all.  \n\n", phrase="That is all.") == 1.0
    assert score(C.ends_with, "That is all. Bye.", phrase="That is all.") == 0.0
    assert score(C.ends_with, "Merci. À bientôt!", phrase="à bientôt!") == 1.0


def test_postscript():
    assert score(C.postscript, "Main text.\n\nP.S. Bring snacks.", marker="P.S.") == 1.0
    assert score(C.postscript, "P.S. only a postscript", marker="P.S.") == 0.0  # needs content before it
    assert score(C.postscript, "Main text.\nP.S.", marker="P.S.") == 0.0  # empty postscript
    assert score(C.postscript, "Main text without one.", marker="P.S.") == 0.0


def test_title():
    assert score(C.title, "<<Lava Lamps>>\nThey glow.") == 1.0
    assert score(C.title, "<<Volcans célèbres>>\n...") == 1.0
    assert score(C.title, "<<>> empty title") == 0.0
    assert score(C.title, "<<broken\ntitle>>") == 0.0
    assert score(C.title, "[[Title]] text", open="[[", close="]]") == 1.0


def test_quoted():
    assert score(C.quoted, '"The whole answer is quoted."\n') == 1.0
    assert score(C.quoted, "“Curly quotes count too.”") == 1.0
    assert score(C.quoted, '"Only starts with a quote.') == 0.0
    assert score(C.quoted, '""') == 0.0


def test_json_format():
    assert score(C.json_format, '{"answer": "yes"}  ') == 1.0
    assert score(C.json_format, '```json\n{"title": "T", "summary": "S"}\n```', keys=["title", "summary"]) == 1.0
    assert score(C.json_format, '{"title": "T"}', keys=["title", "summary"]) == 0.75
    assert score(C.json_format, '["a"]', keys=["title"]) == 0.5
    assert score(C.json_format, 'Here is JSON: {"a": 1}') == 0.0
    assert score(C.json_format, '{"ключ": "значение"}', keys=["ключ"]) == 1.0


def test_check_constraints_results_and_serialisation():
    results = C.check_constraints("hello world", [{"kind": "lowercase"}, {"kind": "word_count", "min_words": 4}])
    assert [r.satisfied for r in results] == [True, False]
    d = results[1].to_dict()
    assert d == {"kind": "word_count", "score": 0.5, "satisfied": False, "reason": "2 words, fewer than 4"}
    json.dumps(d)


def test_validate_constraint_errors_name_the_source():
    with pytest.raises(UserError, match=r"rec:3: unknown constraint kind 'word_cuont' \(did you mean 'word_count'\?\)"):
        C.validate_constraint({"kind": "word_cuont"}, source="rec:3")
    with pytest.raises(UserError, match="unknown parameter 'cont'.*did you mean 'count'"):
        C.validate_constraint({"kind": "bullet_count", "cont": 3})
    with pytest.raises(UserError, match="needs count"):
        C.validate_constraint({"kind": "bullet_count"})
    with pytest.raises(UserError, match="bad value for 'count'"):
        C.validate_constraint({"kind": "bullet_count", "count": "3"})
    with pytest.raises(UserError, match="bad value for 'keywords'"):
        C.validate_constraint({"kind": "include_keywords", "keywords": []})
    with pytest.raises(UserError, match="at least one bound"):
        C.validate_constraint({"kind": "word_count"})
    with pytest.raises(UserError, match="needs a 'kind'"):
        C.validate_constraint({"count": 1})


def test_parse_constraints_accepts_json_strings_and_datasets_none_padding():
    padded = [{"kind": "bullet_count", "count": 2, "keywords": None, "phrase": None}]
    assert C.parse_constraints(padded) == [{"kind": "bullet_count", "count": 2}]
    assert C.parse_constraints(json.dumps(padded)) == [{"kind": "bullet_count", "count": 2}]
    assert C.parse_constraints(None) == [] and C.parse_constraints("") == []
    with pytest.raises(UserError, match="not valid JSON"):
        C.parse_constraints("[{")
    with pytest.raises(UserError, match=r"constraints\[0\]"):
        C.parse_constraints([{"kind": "nope"}])


def test_conflicts_are_symmetric():
    for name in C.CONSTRAINTS.names():
        for other in C.CONSTRAINTS.get(name).conflicts:
            assert name in C.CONSTRAINTS.get(other).conflicts
    assert not C.compatible(["lowercase"], "uppercase")
    assert not C.compatible(["lowercase"], "lowercase")
    assert C.compatible(["lowercase"], "no_commas")


def test_a_kind_reads_its_parameters_from_its_check_signature():
    assert C.CONSTRAINTS.get("word_count").params == {"min_words": (int, False), "max_words": (int, False)}
    assert C.CONSTRAINTS.get("keyword_frequency").params == {"keyword": (str, True), "min_count": (int, True)}
    assert C.CONSTRAINTS.get("include_keywords").params == {"keywords": (list, True)}
    assert C.CONSTRAINTS.get("json_format").params == {"keys": (list, False)}
    assert C.CONSTRAINTS.get("title").params == {"open": (str, False), "close": (str, False)}
    assert C.CONSTRAINTS.get("lowercase").params == {}


def test_declared_conflicts_name_registered_kinds():
    names = set(C.CONSTRAINTS.names())
    for name in names:
        assert C.CONSTRAINTS.get(name).declared_conflicts <= names


def test_repair_response_edits_the_form_and_keeps_the_words():
    lower = [{"kind": "lowercase"}, {"kind": "ends_with", "phrase": "That is all."}]
    assert C.repair_response("Tides Rise, twice a day.", lower) == "tides rise, twice a day.\n\nthat is all."
    assert C.repair_response("One, two, three.", [{"kind": "no_commas"}]) == "One two three."
    quoted = C.repair_response("  Tides rise.\n", [{"kind": "quoted"}])
    assert quoted == '"Tides rise."'
    start = C.repair_response("tides rise.", [{"kind": "starts_with", "phrase": "In short,"}, {"kind": "uppercase"}])
    assert start == "IN SHORT, TIDES RISE."
    # nothing to repair, a failed kind without a repair, or a satisfied response: no candidate
    assert C.repair_response("tides rise.", [{"kind": "lowercase"}]) is None
    assert (
        C.repair_response("Tides rise.", [{"kind": "lowercase"}, {"kind": "include_keywords", "keywords": ["moon"]}])
        is None
    )
    assert C.repair_response("Tides rise.", []) is None


def test_layout_repairs_lay_out_the_responses_own_sentences():
    text = "Tides rise. The moon pulls. The sun helps. Coasts see two highs. Sailors plan."
    bullets = C.repair_response(text, [{"kind": "bullet_count", "count": 3}])
    assert bullets == "Tides rise.\n\n- The moon pulls. The sun helps.\n- Coasts see two highs.\n- Sailors plan."
    paragraphs = C.repair_response(text, [{"kind": "paragraph_count", "count": 2}])
    assert paragraphs == "Tides rise. The moon pulls. The sun helps.\n\nCoasts see two highs. Sailors plan."
    sections = C.repair_response(text, [{"kind": "sections", "count": 2}])
    assert sections.startswith("## Part 1\n\nTides rise.") and "\n\n## Part 2\n\nCoasts see two highs." in sections
    assert C.repair_response(text, [{"kind": "sentence_count", "max_sentences": 2}]) == "Tides rise. The moon pulls."
    assert (
        C.repair_response(text, [{"kind": "word_count", "max_words": 8}])
        == "Tides rise. The moon pulls. The sun helps."
    )
    ps = C.repair_response(text, [{"kind": "postscript", "marker": "P.S."}])
    assert ps == "Tides rise. The moon pulls. The sun helps. Coasts see two highs.\n\nP.S. Sailors plan."
    obj = json.loads(C.repair_response(text, [{"kind": "json_format", "keys": ["title", "summary"]}]))
    assert obj == {
        "title": "Tides rise. The moon pulls. The sun helps.",
        "summary": "Coasts see two highs. Sailors plan.",
    }
    # headers and list markers are not sentences; a layout kind is repaired before the case
    listed = C.repair_response("## Tides\n- Tides rise.\n- The moon pulls.", [{"kind": "paragraph_count", "count": 2}])
    assert listed == "Tides rise.\n\nThe moon pulls."
    both = [{"kind": "lowercase"}, {"kind": "bullet_count", "count": 2}]
    assert C.repair_response("Tides rise. The moon pulls.", both) == "- tides rise.\n- the moon pulls."
    # too few sentences, too few words or a code block: no edit meets the count
    assert C.repair_response("Tides rise.", [{"kind": "bullet_count", "count": 3}]) is None
    assert C.repair_response("Tides rise.", [{"kind": "word_count", "min_words": 10}]) is None
    assert C.repair_response("Tides.\n```\nx = 1\n```\nMoon.", [{"kind": "paragraph_count", "count": 3}]) is None


def test_every_repair_satisfies_its_own_kind():
    params = {
        "starts_with": {"phrase": "Well,"},
        "ends_with": {"phrase": "Done."},
        "word_count": {"max_words": 8},
        "sentence_count": {"max_sentences": 2},
        "bullet_count": {"count": 3},
        "paragraph_count": {"count": 3},
        "sections": {"count": 2},
        "postscript": {"marker": "P.P.S."},
        "json_format": {"keys": ["topic", "facts"]},
    }
    text = "Some Text, with Case. A second sentence here. And a third one. Then a fourth."
    for name in C.CONSTRAINTS.names():
        kind = C.CONSTRAINTS.get(name)
        if kind.repair is not None:
            constraint = {"kind": name, **params.get(name, {})}
            repaired = C.repair_response(text, [constraint])
            assert repaired is not None and C.check_constraint(repaired, constraint).satisfied, name
