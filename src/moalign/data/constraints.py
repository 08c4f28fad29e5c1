"""Verifiable constraints: small pure functions ``check(response, **params) -> (score, reason)``.

A record carries its constraints as JSON, e.g. ``[{"kind": "word_count", "min_words": 20, "max_words": 60}]``.
Every kind registers with :func:`register_constraint` beside its check (parameters read from its signature).
Scores lie in [0, 1], *satisfied* at 1: count constraints give partial credit, format ones all-or-nothing.
Readings taken: an empty response satisfies nothing; outer whitespace is ignored; matching is case-insensitive,
keywords whole words; text measures are those of :mod:`moalign.data.text_features`.

Notes: docs/papers.md#dataconstraintspy.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moalign.data import text_features as tf
from moalign.errors import UserError
from moalign.registry import Registry, did_you_mean

Check = Callable[..., tuple[float, str]]
Wording = Callable[..., str]
"""``wording(**params) -> sentence``: one way of asking for a constraint in a prompt."""
Sampler = Callable[[random.Random, Mapping[str, Any]], dict[str, Any]]
"""``sample(rng, context) -> params``; ``context`` carries the topic's ``keywords`` so keyword constraints fit
the prompt."""


@dataclass(frozen=True)
class ConstraintResult:
    """The outcome of one constraint on one response."""

    kind: str
    score: float
    reason: str

    @property
    def satisfied(self) -> bool:
        return self.score >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "score": round(self.score, 4), "satisfied": self.satisfied, "reason": self.reason}


@dataclass(frozen=True)
class ConstraintKind:
    """A registered constraint kind.

    ``params`` maps each parameter to its type (``int``, ``str`` or ``list`` of str) and whether it is
    required; ``shapes_response`` marks kinds that fix length or layout (they are left out of prompts
    tagged with controllable dimensions, which ask for length and layout themselves).
    """

    name: str
    check: Check
    instructions: tuple[Wording, ...]
    """The wordings a training prompt asks for it in (any one of them; a prompt draws one)."""
    held_out_instructions: tuple[Wording, ...]
    """Other wordings of the same request, disjoint from ``instructions``, used by the held-out splits
    (validation, test), so a test prompt asks in words training never showed (the gain has to transfer, not
    follow one phrasing)."""
    sample: Sampler
    params: dict[str, tuple[type, bool]]
    declared_conflicts: frozenset[str] = frozenset()
    shapes_response: bool = False
    needs_a_bound: bool = False
    """At least one of its (optional) parameters must be given."""
    repair: Callable[..., str] | None = None
    """``repair(response, **params)``: the response edited to satisfy this kind while keeping its words (case
    changed, commas dropped, the phrase or quotes added, its sentences laid out as the count asks, cut to the
    first ones that fit, or put into JSON), or unchanged where no such edit exists (see :func:`repair_response`)."""

    def wordings(self, held_out: bool = False) -> tuple[Wording, ...]:
        """The training wordings, or (``held_out``) the held-out splits' ones."""
        return self.held_out_instructions if held_out else self.instructions

    @property
    def conflicts(self) -> frozenset[str]:
        """The kinds it cannot be combined with: those it declares and those that declare it (symmetric)."""
        declaring = {n for n in CONSTRAINTS.names() if self.name in CONSTRAINTS.get(n).declared_conflicts}
        return self.declared_conflicts | declaring


CONSTRAINTS: Registry[ConstraintKind] = Registry("constraint kind")


def _nonempty(check: Check) -> Check:
    """An empty or whitespace-only response fails every constraint."""

    @functools.wraps(check)
    def wrapped(response: str, **params: Any) -> tuple[float, str]:
        if not response.strip():
            return 0.0, "empty response"
        return check(response, **params)

    return wrapped


def _param_type(hint: Any) -> type:
    """``int``, ``str`` or ``list`` from a parameter's annotation (``X | None`` read as ``X``)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    (only,) = [typing.get_origin(t) or t for t in (typing.get_args(hint) if union else (hint,)) if t is not type(None)]
    return only


def signature_params(check: Check) -> dict[str, tuple[type, bool]]:
    """``{name: (type, required)}`` of a check's parameters after ``response``, read from its signature: the
    annotated type (:func:`_param_type`), required where the parameter has no default."""
    hints = typing.get_type_hints(check)
    parameters = list(inspect.signature(check).parameters.values())[1:]
    return {p.name: (_param_type(hints[p.name]), p.default is inspect.Parameter.empty) for p in parameters}


def _wording_tuple(wordings: Wording | Sequence[Wording], name: str) -> tuple[Wording, ...]:
    out = (wordings,) if callable(wordings) else tuple(wordings)
    if not out or not all(callable(w) for w in out):
        raise ValueError(f"constraint kind '{name}' needs one or more wordings (callables), got {wordings!r}")
    return out


def register_constraint(
    instructions: Wording | Sequence[Wording],
    sample: Sampler,
    *,
    held_out: Wording | Sequence[Wording],
    conflicts: Iterable[str] = (),
    shapes_response: bool = False,
    needs_a_bound: bool = False,
    repair: Callable[..., str] | None = None,
) -> Callable[[Check], Check]:
    """Register the decorated check as the constraint kind of its function's name, its parameters read from its
    signature (:func:`signature_params`); the check is wrapped to fail an empty response.

    ``instructions`` are the wordings (``wording(**params) -> sentence``, one or a sequence) that ask for the
    constraint in training prompts, ``held_out`` other wordings, sharing no phrase with those, for held-out
    prompts (:attr:`ConstraintKind.held_out_instructions`); each must say every parameter exactly, so a
    response that follows any wording passes the same check. ``sample`` draws its
    parameters; ``conflicts`` names kinds it cannot (or can hardly) be satisfied together with (the relation is
    symmetric: :attr:`ConstraintKind.conflicts`); ``repair`` edits a response to satisfy it
    (:attr:`ConstraintKind.repair`).
    """

    def decorator(check: Check) -> Check:
        wrapped = _nonempty(check)
        kind = ConstraintKind(
            name=check.__name__,
            check=wrapped,
            instructions=_wording_tuple(instructions, check.__name__),
            held_out_instructions=_wording_tuple(held_out, check.__name__),
            sample=sample,
            params=signature_params(check),
            declared_conflicts=frozenset(conflicts),
            shapes_response=shapes_response,
            needs_a_bound=needs_a_bound,
            repair=repair,
        )
        CONSTRAINTS.add(kind.name, kind)
        return wrapped

    return decorator


def _bounds_score(n: int, low: int | None, high: int | None, unit: str) -> tuple[float, str]:
    """1 inside ``[low, high]``; outside, the ratio of the count to the bound it misses."""
    if low is not None and n < low:
        return n / low, f"{n} {unit}, fewer than {low}"
    if high is not None and n > high:
        return high / n, f"{n} {unit}, more than {high}"
    return 1.0, f"{n} {unit}, within bounds"


def _exact_score(n: int, count: int, unit: str) -> tuple[float, str]:
    """1 at exactly ``count``; loses ``1/count`` per item too many or too few."""
    if n == count:
        return 1.0, f"{n} {unit}, as required"
    return max(0.0, 1.0 - abs(n - count) / max(count, 1)), f"{n} {unit}, expected exactly {count}"


def _phrase_re(phrase: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive match of ``phrase``; inner whitespace matches any whitespace."""
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _quote_list(items: Sequence[str], conjunction: str = "and") -> str:
    quoted = [f'"{w}"' for w in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


BOUNDS_WORDINGS: dict[str, tuple[str, str, str]] = {
    "between": ("between {} and {}", "at least {}", "at most {}"),
    "minimum": ("anywhere from {} to {}", "a minimum of {}", "a maximum of {}"),
    "no fewer": ("no fewer than {} and no more than {}", "no fewer than {}", "no more than {}"),
    "or more": ("{}-{}", "{} or more", "{} or fewer"),
}
"""How a range is said (both bounds, lower only, upper only), bounds included: the train wordings use the
first two styles, the held-out ones the last two."""


def _bounds_text(noun: str, low: int | None, high: int | None, style: str) -> str:
    both, at_least, at_most = BOUNDS_WORDINGS[style]
    if low is not None and high is not None:
        bound = both.format(low, high)
    else:
        bound = at_least.format(low) if low is not None else at_most.format(high)
    return f"{bound} {noun}".strip()


def _the_words(items: Sequence[str], conjunction: str = "and", noun: str = "word") -> str:
    """``the word "a"`` or ``the words "a" and "b"``."""
    return f"the {noun}{'s' if len(items) > 1 else ''} {_quote_list(items, conjunction)}"


def _sample_bounds(rng: random.Random, choices: Sequence[tuple[int | None, int | None]], lo: str, hi: str) -> dict:
    low, high = rng.choice(choices)
    return {k: v for k, v in ((lo, low), (hi, high)) if v is not None}


OPENING_PHRASES = ("Here is my answer:", "In short,", "Great question!", "To begin with,", "Let me explain.")
CLOSING_PHRASES = (
    "Is there anything else I can help with?",
    "That is all.",
    "Thank you for reading.",
    "Any questions?",
)
FILLER_WORDS = ("very", "really", "basically", "actually", "just", "thing", "important", "good")
JSON_KEY_SETS = (("answer",), ("title", "summary"), ("topic", "facts"), ("question", "answer"), ("name", "description"))


# --- layout repairs: a response's own sentences laid out anew ------------------------------------

_ITEM_MARKER_RE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")


def _plain_sentences(response: str) -> list[str]:
    """The sentences of ``response`` for a layout repair: header lines dropped, list markers stripped; none if
    it has a code block (code is not re-laid)."""
    if tf.has_code_block(response):
        return []
    lines = [ln for ln in response.splitlines() if not (tf.HEADER_RE.match(ln) or tf.BOLD_LINE_RE.match(ln))]
    return [s for ln in lines for s in tf.sentences(_ITEM_MARKER_RE.sub("", ln))]


def _chunks(items: Sequence[str], n: int) -> list[str]:
    """``items`` cut into ``n`` contiguous groups of nearly equal size (the first ones larger), each joined."""
    q, r = divmod(len(items), n)
    starts = [k * q + min(k, r) for k in range(n + 1)]
    return [" ".join(items[a:b]) for a, b in zip(starts, starts[1:], strict=False)]


def _relay_list(response: str, count: int) -> str:
    sents = _plain_sentences(response)
    if len(sents) < count:
        return response
    intro, rest = (sents[:1], sents[1:]) if len(sents) > count else ([], sents)
    items = "\n".join(f"- {chunk}" for chunk in _chunks(rest, count))
    return f"{intro[0]}\n\n{items}" if intro else items


def _relay_paragraphs(response: str, count: int) -> str:
    sents = _plain_sentences(response)
    return "\n\n".join(_chunks(sents, count)) if len(sents) >= count else response


def _relay_sections(response: str, count: int) -> str:
    sents = _plain_sentences(response)
    if len(sents) < count:
        return response
    return "\n\n".join(f"## Part {k}\n\n{chunk}" for k, chunk in enumerate(_chunks(sents, count), start=1))


def _first_sentences(response: str, check: Check, **params: Any) -> str:
    """The longest run of ``response``'s first sentences, as one paragraph, that satisfies ``check(text,
    **params)`` (its own kind's check); else ``response``."""
    sents = _plain_sentences(response)
    for n in range(len(sents) - 1, 0, -1):
        text = " ".join(sents[:n])
        if check(text, **params)[0] == 1.0:
            return text
    return response


def _move_last_sentence(response: str, marker: str) -> str:
    """The last sentence moved into a postscript opened by ``marker``."""
    sents = tf.sentences(response)
    text = response.rstrip()
    start = text.rfind(sents[-1]) if len(sents) > 1 else -1
    if start <= 0 or not text[:start].strip():
        return response
    return f"{text[:start].rstrip()}\n\n{marker} {_ITEM_MARKER_RE.sub('', sents[-1])}"


def _as_json(response: str, keys: list[str] | None = None) -> str:
    """The response's sentences as a JSON object: shared out over ``keys`` in order, else under ``answer``."""
    sents = _plain_sentences(response)
    names = keys or ["answer"]
    if len(sents) < len(names):
        return response
    return json.dumps(dict(zip(names, _chunks(sents, len(names)), strict=True)), indent=2, ensure_ascii=False)


# --- length and layout ------------------------------------------------------------------------


@register_constraint(
    (
        lambda min_words=None, max_words=None: (
            f"Your answer must be {_bounds_text('words', min_words, max_words, 'between')} long."
        ),
        lambda min_words=None, max_words=None: (
            f"Respond using {_bounds_text('words', min_words, max_words, 'minimum')}."
        ),
        lambda min_words=None, max_words=None: (
            f"Count your words as you write: the whole reply needs "
            f"{_bounds_text('words', min_words, max_words, 'between')}."
        ),
    ),
    lambda rng, ctx: _sample_bounds(
        rng,
        [(None, 25), (None, 40), (10, 30), (20, 50), (30, 60), (40, 80), (50, 100), (60, None)],
        "min_words",
        "max_words",
    ),
    conflicts={"sentence_count"},
    shapes_response=True,
    needs_a_bound=True,
    held_out=(
        lambda min_words=None, max_words=None: (
            f"Keep the response to {_bounds_text('words', min_words, max_words, 'no fewer')}."
        ),
        lambda min_words=None, max_words=None: (
            f"The response should run to {_bounds_text('words', min_words, max_words, 'or more')}."
        ),
    ),
    repair=lambda response, **bounds: _first_sentences(response, word_count, **bounds),
)
def word_count(response: str, min_words: int | None = None, max_words: int | None = None) -> tuple[float, str]:
    """Word count within ``[min_words, max_words]`` (either bound optional)."""
    return _bounds_score(tf.word_count(response), min_words, max_words, "words")


@register_constraint(
    (
        lambda min_sentences=None, max_sentences=None: (
            f"Your answer must contain {_bounds_text('sentences', min_sentences, max_sentences, 'between')}."
        ),
        lambda min_sentences=None, max_sentences=None: (
            f"Write your reply in {_bounds_text('sentences', min_sentences, max_sentences, 'minimum')}."
        ),
        lambda min_sentences=None, max_sentences=None: (
            f"The number of sentences in your reply must be "
            f"{_bounds_text('', min_sentences, max_sentences, 'between')}."
        ),
    ),
    lambda rng, ctx: _sample_bounds(
        rng, [(None, 2), (None, 3), (1, 2), (2, 4), (3, 5), (4, 6), (3, None)], "min_sentences", "max_sentences"
    ),
    shapes_response=True,
    needs_a_bound=True,
    held_out=(
        lambda min_sentences=None, max_sentences=None: (
            f"Write {_bounds_text('sentences', min_sentences, max_sentences, 'no fewer')} in total."
        ),
        lambda min_sentences=None, max_sentences=None: (
            f"Compose the response out of {_bounds_text('sentences', min_sentences, max_sentences, 'or more')}."
        ),
    ),
    repair=lambda response, **bounds: _first_sentences(response, sentence_count, **bounds),
)
def sentence_count(
    response: str, min_sentences: int | None = None, max_sentences: int | None = None
) -> tuple[float, str]:
    """Sentence count within ``[min_sentences, max_sentences]``."""
    return _bounds_score(len(tf.sentences(response)), min_sentences, max_sentences, "sentences")


@register_constraint(
    (
        lambda count: f'Your answer must contain exactly {count} bullet points, each starting with "- ".',
        lambda count: (
            f'Present your answer as a bulleted list of exactly {count} points, each line beginning with "- ".'
        ),
        lambda count: f'Answer with {count} bullet points, no more and no fewer; start each one with "- ".',
    ),
    lambda rng, ctx: {"count": rng.randint(2, 5)},
    shapes_response=True,
    held_out=(
        lambda count: f'Format the response as a Markdown list with {count} items; begin every line with "- ".',
        lambda count: f"Lay out the response as precisely {count} list entries, each introduced by a dash and a space.",
    ),
    repair=_relay_list,
)
def bullet_count(response: str, count: int) -> tuple[float, str]:
    """Exactly ``count`` Markdown bullet points outside code blocks."""
    return _exact_score(len(tf.bullet_lines(response)), count, "bullet points")


@register_constraint(
    (
        lambda count: f"Write exactly {count} paragraphs, separated from each other by a blank line.",
        lambda count: f"Split your answer into {count} paragraphs and leave a blank line after each one but the last.",
        lambda count: f"Use exactly {count} paragraphs, and put a blank line between consecutive ones.",
    ),
    lambda rng, ctx: {"count": rng.randint(2, 4)},
    conflicts={"bullet_count", "sections", "sentence_count"},
    shapes_response=True,
    held_out=(
        lambda count: f"Your response should consist of {count} paragraphs, with an empty line between them.",
        lambda count: f"Give the response {count} paragraphs in all, set apart from one another by empty lines.",
    ),
    repair=_relay_paragraphs,
)
def paragraph_count(response: str, count: int) -> tuple[float, str]:
    """Exactly ``count`` paragraphs separated by blank lines."""
    return _exact_score(len(tf.paragraphs(response)), count, "paragraphs")


@register_constraint(
    (
        lambda count: (
            f"Divide your answer into exactly {count} sections, "
            'each starting with a Markdown header such as "## Title".'
        ),
        lambda count: (
            f'Your answer needs exactly {count} headed sections: start each with a header line such as "## Overview".'
        ),
        lambda count: (
            f'Use exactly {count} Markdown headers (lines beginning with "## "), one at the top of each section.'
        ),
    ),
    lambda rng, ctx: {"count": rng.randint(2, 4)},
    shapes_response=True,
    held_out=(
        lambda count: f'Organise the response in {count} parts, and open every part with its own "## " heading line.',
        lambda count: f'Break the response up into {count} segments, each led by a line that starts with "## ".',
    ),
    repair=_relay_sections,
)
def sections(response: str, count: int) -> tuple[float, str]:
    """Exactly ``count`` sections, each opened by a Markdown header line (``## Title``)."""
    return _exact_score(len(tf.header_lines(response)), count, "section headers")


# --- content ----------------------------------------------------------------------------------


@register_constraint(
    (
        lambda keywords: f"Include the words {_quote_list(keywords)} in your answer.",
        lambda keywords: f"Work {_the_words(keywords)} into your reply.",
        lambda keywords: f"Somewhere in your answer, write {_quote_list(keywords)}.",
    ),
    lambda rng, ctx: {"keywords": rng.sample(list(ctx["keywords"]), rng.randint(1, 2))},
    held_out=(
        lambda keywords: f"Make sure the response mentions {_quote_list(keywords)}.",
        lambda keywords: (
            f"The term{'s' if len(keywords) > 1 else ''} {_quote_list(keywords)} "
            f"{'have' if len(keywords) > 1 else 'has'} to appear in the response."
        ),
    ),
)
def include_keywords(response: str, keywords: list[str]) -> tuple[float, str]:
    """Every keyword appears at least once; the score is the share that does."""
    missing = [k for k in keywords if not _phrase_re(k).search(response)]
    if not keywords:
        return 1.0, "no keywords required"
    if missing:
        return 1.0 - len(missing) / len(keywords), f"missing {_quote_list(missing)}"
    return 1.0, "all keywords present"


@register_constraint(
    (
        lambda keyword, min_count: f'Use the word "{keyword}" at least {min_count} times.',
        lambda keyword, min_count: f'Mention "{keyword}" a minimum of {min_count} times in your answer.',
        lambda keyword, min_count: (
            f'Repeat the word "{keyword}" throughout your reply, {min_count} times at the very least.'
        ),
    ),
    lambda rng, ctx: {"keyword": rng.choice(list(ctx["keywords"])), "min_count": rng.randint(2, 3)},
    held_out=(
        lambda keyword, min_count: f'The word "{keyword}" should appear {min_count} or more times in the response.',
        lambda keyword, min_count: f'Say "{keyword}" no fewer than {min_count} times over the course of the response.',
    ),
)
def keyword_frequency(response: str, keyword: str, min_count: int) -> tuple[float, str]:
    """``keyword`` appears at least ``min_count`` times (whole words)."""
    n = len(_phrase_re(keyword).findall(response))
    if n >= min_count:
        return 1.0, f'"{keyword}" appears {n} times'
    return n / min_count, f'"{keyword}" appears {n} times, fewer than {min_count}'


@register_constraint(
    (
        lambda words: f"Do not use the words {_quote_list(words, 'or')} anywhere in your answer.",
        lambda words: f"Leave {_the_words(words)} out of your answer entirely.",
        lambda words: f"Cut {_the_words(words)} from your vocabulary for this answer.",
    ),
    lambda rng, ctx: {"words": rng.sample(FILLER_WORDS, rng.randint(1, 3))},
    held_out=(
        lambda words: f"Never write {_quote_list(words, 'or')} in the response.",
        lambda words: (
            f"Steer clear of {_quote_list(words)}: "
            f"{'they are' if len(words) > 1 else 'it is'} banned from the response."
        ),
    ),
)
def forbidden_words(response: str, words: list[str]) -> tuple[float, str]:
    """None of ``words`` appears; the score is the share that is absent."""
    found = [w for w in words if _phrase_re(w).search(response)]
    if found:
        return 1.0 - len(found) / len(words), f"uses {_quote_list(found)}"
    return 1.0, "no forbidden words"


@register_constraint(
    (
        lambda min_count: (
            f"Include at least {min_count} placeholders in square brackets, such as [name]."
            if min_count > 1
            else "Include at least one placeholder in square brackets, such as [name]."
        ),
        lambda min_count: (
            f"Leave at least {min_count} blanks for the reader to fill in, written in square brackets like [date]."
            if min_count > 1
            else "Leave at least one blank for the reader to fill in, written in square brackets like [date]."
        ),
        lambda min_count: (
            f"Use square brackets for at least {min_count} fill-in fields of your answer, like [company]."
            if min_count > 1
            else "Use square brackets for at least one fill-in field of your answer, like [company]."
        ),
    ),
    lambda rng, ctx: {"min_count": rng.randint(1, 3)},
    held_out=(
        lambda min_count: (
            f"Put {min_count} or more bracketed placeholders, for example [address], in the response."
            if min_count > 1
            else "Put a bracketed placeholder, for example [address], somewhere in the response."
        ),
        lambda min_count: (
            f"Mark {min_count} or more spots in the response as template slots between [ and ], e.g. [recipient]."
            if min_count > 1
            else "Mark a spot in the response as a template slot between [ and ], e.g. [recipient]."
        ),
    ),
)
def placeholders(response: str, min_count: int) -> tuple[float, str]:
    """At least ``min_count`` placeholders in square brackets, e.g. ``[address]`` (Markdown links excluded)."""
    n = len(re.findall(r"\[[^\[\]\n]+\](?!\()", response))
    if n >= min_count:
        return 1.0, f"{n} placeholders"
    return n / min_count, f"{n} placeholders, fewer than {min_count}"


# --- case and punctuation ---------------------------------------------------------------------


@register_constraint(
    (
        lambda: "Write your entire answer in lowercase letters; no capital letters are allowed.",
        lambda: "Do not capitalise anything in your answer, not even the first word of a sentence.",
        lambda: "Keep every word of your reply in lowercase.",
    ),
    lambda rng, ctx: {},
    conflicts={"uppercase"},
    held_out=(
        lambda: "Use only small letters throughout the response: no uppercase at all.",
        lambda: "The response should contain zero upper-case characters, sentence starts and names included.",
    ),
    repair=lambda response: response.lower(),
)
def lowercase(response: str) -> tuple[float, str]:
    """No capital letters; the score is the share of cased letters in lower case (none cased: satisfied)."""
    letters = tf.cased_letters(response)
    upper = [c for c in letters if not c.islower()]
    if not upper:
        return 1.0, "no capital letters"
    return 1.0 - len(upper) / len(letters), f"{len(upper)} capital letters"


@register_constraint(
    (
        lambda: "Write your entire answer in English capital letters only.",
        lambda: "Type your whole reply in all caps.",
        lambda: "Capitalise every single letter of your answer.",
    ),
    lambda rng, ctx: {},
    held_out=(
        lambda: "Reply entirely in uppercase English letters.",
        lambda: "Set the whole response in block capitals, with no small letters anywhere.",
    ),
    repair=lambda response: response.upper(),
)
def uppercase(response: str) -> tuple[float, str]:
    """No lower-case letters; the score is the share of cased letters in upper case."""
    letters = tf.cased_letters(response)
    lower = [c for c in letters if not c.isupper()]
    if not lower:
        return 1.0, "all capitals"
    return 1.0 - len(lower) / len(letters), f"{len(lower)} lower-case letters"


COMMAS = ",，、،"


@register_constraint(
    (
        lambda: "Do not use any commas in your answer.",
        lambda: "Not one comma may appear in your answer.",
        lambda: "Write without a single comma; use other punctuation where a comma would go.",
    ),
    lambda rng, ctx: {},
    held_out=(
        lambda: "Avoid commas completely in the response.",
        lambda: "Punctuate the response without the comma character, not even once.",
    ),
    repair=lambda response: re.sub(f"[{COMMAS}]", "", response),
)
def no_commas(response: str) -> tuple[float, str]:
    """No commas (ASCII, full-width, ideographic or Arabic); the score is ``1 / (1 + commas)``."""
    n = sum(response.count(c) for c in COMMAS)
    return (1.0, "no commas") if n == 0 else (1.0 / (1 + n), f"{n} commas")


# --- framing ----------------------------------------------------------------------------------


@register_constraint(
    (
        lambda phrase: f'Start your answer with the exact phrase "{phrase}".',
        lambda phrase: f'The first words of your reply must be "{phrase}".',
        lambda phrase: f'Open your answer with "{phrase}", word for word.',
    ),
    lambda rng, ctx: {"phrase": rng.choice(OPENING_PHRASES)},
    conflicts={"title"},
    held_out=(
        lambda phrase: f'Begin the response with the exact words "{phrase}", with nothing before them.',
        lambda phrase: f'Lead off the response with "{phrase}" verbatim, ahead of anything else.',
    ),
    repair=lambda response, phrase: f"{phrase} {response.lstrip()}",
)
def starts_with(response: str, phrase: str) -> tuple[float, str]:
    """The response begins with ``phrase`` (case and whitespace insensitive)."""
    ok = _normal(response).startswith(_normal(phrase))
    return (1.0, "starts with the phrase") if ok else (0.0, f'does not start with "{phrase}"')


@register_constraint(
    (
        lambda phrase: f'End your answer with the exact phrase "{phrase}". No other words should follow it.',
        lambda phrase: f'Make "{phrase}" the final words of your answer, with nothing after it.',
        lambda phrase: f'Conclude your reply with "{phrase}"; it has to be the last thing you write.',
    ),
    lambda rng, ctx: {"phrase": rng.choice(CLOSING_PHRASES)},
    conflicts={"postscript"},
    held_out=(
        lambda phrase: f'Finish the response with the words "{phrase}" and write nothing after them.',
        lambda phrase: f'The response\'s closing line has to read "{phrase}", and nothing may follow.',
    ),
    repair=lambda response, phrase: f"{response.rstrip()}\n\n{phrase}",
)
def ends_with(response: str, phrase: str) -> tuple[float, str]:
    """The response ends with ``phrase``, nothing after it but whitespace (case insensitive)."""
    ok = _normal(response).endswith(_normal(phrase))
    return (1.0, "ends with the phrase") if ok else (0.0, f'does not end with "{phrase}"')


@register_constraint(
    (
        lambda marker: f'At the end of your answer, add a postscript starting with "{marker}".',
        lambda marker: f'Below the main part of your answer, add one more line of text starting with "{marker}".',
        lambda marker: f'Sign off your reply with a postscript line headed "{marker}".',
    ),
    lambda rng, ctx: {"marker": rng.choice(("P.S.", "P.P.S."))},
    shapes_response=True,
    held_out=(
        lambda marker: f'Close the response with a postscript that begins with "{marker}".',
        lambda marker: f'Tack an afterthought onto the bottom of the response, introduced by "{marker}".',
    ),
    repair=_move_last_sentence,
)
def postscript(response: str, marker: str) -> tuple[float, str]:
    """A postscript: a line starting with ``marker`` (e.g. ``P.S.``) after some other content."""
    lines = [ln.strip() for ln in response.strip().splitlines()]
    for i, line in enumerate(lines):
        if i > 0 and line.casefold().startswith(marker.casefold()) and len(line) > len(marker):
            return 1.0, f"postscript on line {i + 1}"
    return 0.0, f'no postscript starting with "{marker}"'


@register_constraint(
    (
        lambda open="<<", close=">>": (
            f"Give your answer a title wrapped in {open} and {close}, such as {open}a title{close}."
        ),
        lambda open="<<", close=">>": f"Your answer needs a title, written as {open}Title Here{close}.",
        lambda open="<<", close=">>": (
            f"Head your reply with a title enclosed in {open} {close} markers, for example {open}Notes{close}."
        ),
    ),
    lambda rng, ctx: {},
    shapes_response=True,
    held_out=(
        lambda open="<<", close=">>": f"Put a title at the top, enclosed like this: {open}title{close}.",
        lambda open="<<", close=">>": (
            f"Name the response with a title framed by {open} on the left and {close} on the right."
        ),
    ),
)
def title(response: str, open: str = "<<", close: str = ">>") -> tuple[float, str]:
    """A title wrapped in ``open``/``close`` markers, e.g. ``<<My title>>``, on one line."""
    pattern = re.escape(open) + r"[^\n]*?\w[^\n]*?" + re.escape(close)
    if re.search(pattern, response):
        return 1.0, "has a title"
    return 0.0, f"no title wrapped in {open} {close}"


QUOTE_PAIRS = (('"', '"'), ("“", "”"), ("«", "»"), ("„", "“"))


@register_constraint(
    (
        lambda: "Wrap your entire answer in double quotation marks.",
        lambda: "Surround your whole reply with double quotation marks.",
        lambda: "Enclose everything you write in double quotation marks, from the first word to the last.",
    ),
    lambda rng, ctx: {},
    conflicts={"starts_with", "ends_with", "postscript", "sections", "bullet_count", "title"},
    shapes_response=True,
    held_out=(
        lambda: "Put the whole response inside a pair of double quotes.",
        lambda: 'Make the response a single quotation, opening with " and closing with ".',
    ),
    repair=lambda response: f'"{response.strip()}"',
)
def quoted(response: str) -> tuple[float, str]:
    """The whole response is wrapped in double quotation marks (straight, curly or guillemets)."""
    text = response.strip()
    for left, right in QUOTE_PAIRS:
        if len(text) >= 3 and text.startswith(left) and text.endswith(right) and tf.words(text):
            return 1.0, "wrapped in quotation marks"
    return 0.0, "not wrapped in double quotation marks"


def _json_body(response: str) -> str:
    text = response.strip()
    fenced = re.fullmatch(r"(```|~~~)[\w-]*\s*\n(.*?)\n?\s*\1", text, re.DOTALL)
    return fenced.group(2) if fenced else text


@register_constraint(
    (
        lambda keys=None: (
            f"Format your entire answer as a JSON object with the keys {_quote_list(keys)}."
            if keys
            else "Format your entire answer as valid JSON."
        ),
        lambda keys=None: (
            f"Answer in JSON only: an object with {_the_words(keys, noun='field')}."
            if keys
            else "Answer in JSON only, with no text outside it."
        ),
        lambda keys=None: (
            f"Output a single JSON object containing {_the_words(keys, noun='key')}, and no other text."
            if keys
            else "Output a single valid JSON document and no other text."
        ),
    ),
    lambda rng, ctx: {"keys": list(rng.choice(JSON_KEY_SETS))} if rng.random() < 0.7 else {},
    conflicts={
        "sentence_count",
        "bullet_count",
        "paragraph_count",
        "sections",
        "starts_with",
        "ends_with",
        "postscript",
        "title",
        "quoted",
        "no_commas",
        "uppercase",
        "placeholders",
    },
    shapes_response=True,
    held_out=(
        lambda keys=None: (
            f"Reply with nothing but a JSON object whose keys are {_quote_list(keys)}."
            if keys
            else "Reply with nothing but valid JSON."
        ),
        lambda keys=None: (
            f"The response must be machine-readable JSON: one object that has {_quote_list(keys)} among its properties."
            if keys
            else "The response must be machine-readable JSON that parses without errors."
        ),
    ),
    repair=_as_json,
)
def json_format(response: str, keys: list[str] | None = None) -> tuple[float, str]:
    """The whole response is valid JSON (a single fenced block is accepted); with ``keys``, an object having them.

    Invalid JSON scores 0; valid JSON missing some keys scores 0.5 plus half the share of keys present.
    """
    try:
        value = json.loads(_json_body(response))
    except json.JSONDecodeError as exc:
        return 0.0, f"invalid JSON: {exc.msg} at line {exc.lineno}"
    if not keys:
        return 1.0, "valid JSON"
    if not isinstance(value, dict):
        return 0.5, f"valid JSON but a {type(value).__name__}, not an object"
    missing = [k for k in keys if k not in value]
    if missing:
        return 0.5 + 0.5 * (1 - len(missing) / len(keys)), f"JSON object missing keys {_quote_list(missing)}"
    return 1.0, "valid JSON object with the required keys"


# --- records ----------------------------------------------------------------------------------


def validate_constraint(raw: Any, *, source: str = "constraint") -> dict[str, Any]:
    """A checked constraint dict: a known ``kind``, its required parameters, right types, nothing unknown.

    Keys whose value is ``None`` are dropped first (a ``datasets`` column fills absent keys with None).
    Raises :class:`UserError` naming ``source``.
    """
    if not isinstance(raw, Mapping):
        raise UserError(f"a constraint must be a mapping with a 'kind', got {raw!r}", source=source)
    spec = {k: v for k, v in raw.items() if v is not None}
    kind_name = spec.pop("kind", None)
    if not isinstance(kind_name, str):
        raise UserError(f"a constraint needs a 'kind' string, got {raw!r}", source=source)
    if kind_name not in CONSTRAINTS:
        known = ", ".join(CONSTRAINTS.names())
        raise UserError(
            f"unknown constraint kind '{kind_name}'{did_you_mean(kind_name, CONSTRAINTS.names())}; known: {known}",
            source=source,
        )
    kind = CONSTRAINTS.get(kind_name)
    for key, value in spec.items():
        if key not in kind.params:
            hint = did_you_mean(key, list(kind.params))
            raise UserError(f"unknown parameter '{key}' for constraint '{kind_name}'{hint}", source=source)
        expected = kind.params[key][0]
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if ok and expected is list:
            ok = bool(value) and all(isinstance(v, str) and v.strip() for v in value)
        if ok and expected is int:
            ok = value >= 1 if key in ("count", "min_count") else value >= 0
        if not ok:
            raise UserError(f"constraint '{kind_name}': bad value for '{key}': {value!r}", source=source)
    missing = [k for k, (_, required) in kind.params.items() if required and k not in spec]
    if missing:
        raise UserError(f"constraint '{kind_name}' needs {', '.join(missing)}", source=source)
    if kind.needs_a_bound and not any(k in spec for k in kind.params):
        raise UserError(f"constraint '{kind_name}' needs at least one bound", source=source)
    return {"kind": kind_name, **spec}


def parse_constraints(value: Any, *, source: str = "constraints") -> list[dict[str, Any]]:
    """A record's ``constraints`` column (a list, a JSON string or None) as a list of checked dicts."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise UserError(f"constraints are not valid JSON: {exc.msg}", source=source) from None
    if not isinstance(value, list | tuple):
        raise UserError(f"constraints must be a list, got {type(value).__name__}", source=source)
    return [validate_constraint(c, source=f"{source}[{i}]") for i, c in enumerate(value)]


def check_constraint(response: str, constraint: Mapping[str, Any]) -> ConstraintResult:
    """Apply one constraint dict to a response."""
    spec = validate_constraint(constraint)
    kind = spec.pop("kind")
    score, reason = CONSTRAINTS.get(kind).check(response, **spec)
    score = min(1.0, max(0.0, float(score))) if math.isfinite(score) else 0.0
    return ConstraintResult(kind=kind, score=score, reason=reason)


def check_constraints(response: str, constraints: Sequence[Mapping[str, Any]]) -> list[ConstraintResult]:
    """Apply every constraint of a record to a response."""
    return [check_constraint(response, c) for c in constraints]


def repair_response(response: str, constraints: Sequence[Mapping[str, Any]]) -> str | None:
    """``response`` with each unsatisfied constraint's :attr:`~ConstraintKind.repair` applied, layout kinds
    first, in passes (one edit can undo another: a phrase added after the text was lower-cased), if the result then
    satisfies every constraint; None if nothing needed repair, a failed kind has no repair or the edits do
    not settle. An augmentation for rejection sampling: the words are the model's, the edit is not."""
    text = response
    for _ in range(len(constraints) + 1):
        failed = [c for c in constraints if not check_constraint(text, c).satisfied]
        if not failed:
            return None if text == response else text
        for constraint in sorted(failed, key=lambda c: not CONSTRAINTS.get(c["kind"]).shapes_response):
            repair = CONSTRAINTS.get(constraint["kind"]).repair
            if repair is None:
                return None
            text = repair(text, **{k: v for k, v in constraint.items() if k != "kind"})
    return None


def constraint_instruction(constraint: Mapping[str, Any], held_out: bool = False, variant: int = 0) -> str:
    """The sentence that asks for ``constraint`` in a prompt: wording number ``variant`` of the training
    wordings, or (``held_out``) of the held-out splits' ones (:meth:`ConstraintKind.wordings`)."""
    spec = validate_constraint(constraint)
    kind = CONSTRAINTS.get(spec.pop("kind"))
    wordings = kind.wordings(held_out)
    if not 0 <= variant < len(wordings):
        split = "held-out" if held_out else "training"
        raise ValueError(f"constraint '{kind.name}' has {len(wordings)} {split} wordings, no number {variant}")
    return wordings[variant](**spec)


def compatible(kinds: Sequence[str], candidate: str) -> bool:
    """Whether ``candidate`` may join a prompt that already has ``kinds``."""
    return candidate not in kinds and not (CONSTRAINTS.get(candidate).conflicts & set(kinds))
