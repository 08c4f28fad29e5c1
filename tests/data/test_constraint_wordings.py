"""Each constraint kind's wordings: several per split, train and held-out sharing no phrase, every wording
saying its parameters (worked by hand for a few), and a range's bounds meaning the same in every wording."""

import inspect
import itertools
import random
import re

import pytest

from moalign.data import constraints as C

KEYWORDS = ("lava", "magma", "crater")


def param_sets(name: str, draws: int = 12) -> list[dict]:
    """The distinct parameter sets the kind's sampler draws in ``draws`` tries (every bound shape of the
    count kinds, one and two keywords, keys and no keys)."""
    out: list[dict] = []
    for seed in range(draws):
        params = C.CONSTRAINTS.get(name).sample(random.Random(seed), {"keywords": KEYWORDS})
        if params not in out:
            out.append(params)
    return out


def defaults(name: str) -> dict:
    """The check's parameter defaults that a wording renders when the record leaves them out (title's markers)."""
    parameters = list(inspect.signature(C.CONSTRAINTS.get(name).check).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.default not in (inspect.Parameter.empty, None)}


def rendered(constraint: dict, held_out: bool) -> list[str]:
    kind = C.CONSTRAINTS.get(constraint["kind"])
    return [C.constraint_instruction(constraint, held_out, i) for i in range(len(kind.wordings(held_out)))]


def template_words(text: str, params: dict) -> list[str]:
    """The wording's words, case-folded, each parameter value (a list of them as a whole, with its "and" /
    "or") replaced by "§": what is left is the wording's own phrasing."""
    values = [str(x) for v in params.values() for x in (v if isinstance(v, list) else [v])]
    for value in sorted(values, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", " § ", text, flags=re.IGNORECASE)
    words = " ".join(re.findall(r"§|\w+(?:[-'’]\w+)*", text.casefold()))
    return re.sub(r"§(?:,? §)*(?:,? (?:and|or) §)?", "§", words).split()


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_every_kind_has_three_train_and_two_held_out_wordings():
    assert len(C.CONSTRAINTS) == 18
    for name in C.CONSTRAINTS.names():
        kind = C.CONSTRAINTS.get(name)
        assert len(kind.instructions) >= 3 and len(kind.held_out_instructions) >= 2, name
        assert kind.wordings() == kind.instructions and kind.wordings(held_out=True) == kind.held_out_instructions
        for params in param_sets(name):
            for held_out in (False, True):
                texts = rendered({"kind": name, **params}, held_out)
                assert len(set(texts)) == len(texts), texts  # distinct wordings, not one sentence twice
                assert all(t.endswith((".", "?")) and t[0].isupper() and "  " not in t for t in texts), texts


@pytest.mark.parametrize("name", C.CONSTRAINTS.names())
def test_held_out_wordings_share_no_phrase_with_train_wordings(name):
    for params in param_sets(name):
        constraint, full = {"kind": name, **params}, {**defaults(name), **params}
        train = [template_words(t, full) for t in rendered(constraint, held_out=False)]
        held_out = [template_words(t, full) for t in rendered(constraint, held_out=True)]
        for t, h in itertools.product(train, held_out):
            # neither contains the other, and no run of four words (parameters masked) is shared ...
            assert " ".join(t) not in " ".join(h) and " ".join(h) not in " ".join(t), (t, h)
            assert not ngrams(t, 4) & ngrams(h, 4), (t, h, ngrams(t, 4) & ngrams(h, 4))
            # ... nor most of the words: another sentence, not the same one with a word changed
            words, other = set(t) - {"§"}, set(h) - {"§"}
            assert len(words & other) <= len(words) / 2, (t, h)


def test_no_two_kinds_share_a_wording():
    seen: dict[str, str] = {}
    for name in C.CONSTRAINTS.names():
        params = {**defaults(name), **param_sets(name)[0]}
        for held_out in (False, True):
            for text in rendered({"kind": name, **param_sets(name)[0]}, held_out):
                template = " ".join(template_words(text, params))
                assert seen.setdefault(template, name) == name, (template, seen[template], name)


@pytest.mark.parametrize("name", C.CONSTRAINTS.names())
def test_every_wording_says_every_parameter(name):
    for params in param_sets(name):
        full = {**defaults(name), **params}
        for held_out in (False, True):
            for text in rendered({"kind": name, **params}, held_out):
                for key, value in full.items():
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, int):
                            said = re.search(rf"(?<!\d){item}(?!\d)", text) or (
                                item == 1 and re.search(r"\b(one|a)\b", text)
                            )
                        else:
                            said = f'"{item}"' in text if key != "open" and key != "close" else item in text
                        assert said, (key, item, text)


def test_wordings_rendered_by_hand():
    both = {"kind": "word_count", "min_words": 40, "max_words": 80}
    assert rendered(both, held_out=False) == [
        "Your answer must be between 40 and 80 words long.",
        "Respond using anywhere from 40 to 80 words.",
        "Count your words as you write: the whole reply needs between 40 and 80 words.",
    ]
    assert rendered(both, held_out=True) == [
        "Keep the response to no fewer than 40 and no more than 80 words.",
        "The response should run to 40-80 words.",
    ]
    assert rendered({"kind": "word_count", "max_words": 25}, held_out=True) == [
        "Keep the response to no more than 25 words.",
        "The response should run to 25 or fewer words.",
    ]
    assert rendered({"kind": "sentence_count", "min_sentences": 3}, held_out=False)[1:] == [
        "Write your reply in a minimum of 3 sentences.",
        "The number of sentences in your reply must be at least 3.",
    ]
    assert rendered({"kind": "keyword_frequency", "keyword": "tide", "min_count": 3}, held_out=True) == [
        'The word "tide" should appear 3 or more times in the response.',
        'Say "tide" no fewer than 3 times over the course of the response.',
    ]
    one, two = {"kind": "forbidden_words", "words": ["very"]}, {"kind": "forbidden_words", "words": ["very", "just"]}
    assert rendered(one, held_out=False)[1] == 'Leave the word "very" out of your answer entirely.'
    assert rendered(two, held_out=False)[1] == 'Leave the words "very" and "just" out of your answer entirely.'
    assert rendered(one, held_out=True)[1] == 'Steer clear of "very": it is banned from the response.'
    assert rendered(two, held_out=True)[1] == 'Steer clear of "very" and "just": they are banned from the response.'
    assert rendered({"kind": "placeholders", "min_count": 1}, held_out=True)[1] == (
        "Mark a spot in the response as a template slot between [ and ], e.g. [recipient]."
    )
    assert rendered({"kind": "bullet_count", "count": 4}, held_out=False)[2] == (
        'Answer with 4 bullet points, no more and no fewer; start each one with "- ".'
    )
    # markers given in the record replace the defaults in every wording
    custom = {"kind": "title", "open": "[[", "close": "]]"}
    assert all("[[" in t and "]]" in t and "<<" not in t for h in (False, True) for t in rendered(custom, h))
    assert (
        rendered(custom, held_out=True)[1]
        == "Name the response with a title framed by [[ on the left and ]] on the right."
    )


def test_a_range_means_the_same_bounds_in_every_wording():
    """Every bound style includes its bounds ("at least 40", "no fewer than 40", "40-80", "40 or more"), as
    the check does: 40 and 80 words satisfy [40, 80], 39 and 81 do not."""
    for n, ok in ((39, False), (40, True), (80, True), (81, False)):
        result = C.check_constraint(" ".join(["word"] * n), {"kind": "word_count", "min_words": 40, "max_words": 80})
        assert result.satisfied is ok


def test_a_wording_number_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="2 held-out wordings, no number 2"):
        C.constraint_instruction({"kind": "no_commas"}, held_out=True, variant=2)
    with pytest.raises(ValueError, match="needs one or more wordings"):
        C.register_constraint((), lambda rng, ctx: {}, held_out=lambda: "x.")(lambda response: (1.0, "ok"))
