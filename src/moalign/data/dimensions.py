"""Controllable dimensions of the task suite: ``brevity`` and ``structure``, intensity 1 to 5.

A tagged prompt such as ``<brevity 4><structure 2> Explain tides.`` asks for that intensity in each named
dimension (the MOSLIM prompt format). Each dimension has a **measure** (the intensity a response shows, 1-5)
and a **match** score in [0, 1]; the ``brevity`` and ``structure`` scorers wrap them. ``brevity`` bands the
word count (5: 1-15 words ... 1: 101 or more); ``structure`` reads the layout (1: one paragraph of prose ...
5: sections with headers and a list).

Notes: docs/papers.md#datadimensionspy (the level tables and the match functions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from moalign.data import text_features as tf
from moalign.tags import format_tags, parse_tags, tag_column

LEVELS = (1, 2, 3, 4, 5)

BREVITY_BANDS: dict[int, tuple[int, int | None]] = {5: (1, 15), 4: (16, 30), 3: (31, 60), 2: (61, 100), 1: (101, None)}
"""Word-count band of each brevity level: ``(min_words, max_words)``, ``None`` = no upper bound."""

STRUCTURE_LEVELS: dict[int, str] = {
    1: "plain prose in one paragraph",
    2: "prose in several paragraphs",
    3: "a bulleted or numbered list",
    4: "sections with headers",
    5: "sections with headers and a list",
}


def brevity_level(response: str) -> int:
    """The brevity level (1-5) whose word band holds the response; an empty response counts as level 5."""
    n = tf.word_count(response)
    for level in sorted(BREVITY_BANDS, reverse=True):
        low, high = BREVITY_BANDS[level]
        if high is None or n <= high:
            return level
    return 1  # pragma: no cover - the level-1 band is unbounded


def brevity_match(response: str, intensity: int) -> float:
    """How well the word count fits the band of ``intensity``: 1 inside, log2-linear decay outside."""
    low, high = BREVITY_BANDS[_check_level(intensity)]
    n = tf.word_count(response)
    if n == 0:
        return 0.0
    if n < low:
        return max(0.0, 1.0 - math.log2(low / n))
    if high is not None and n > high:
        return max(0.0, 1.0 - math.log2(n / high))
    return 1.0


def structure_level(response: str) -> int:
    """The structure level (1-5) of the response's layout (the layouts of :data:`STRUCTURE_LEVELS`)."""
    headers = len(tf.header_lines(response, include_bold=True))
    items = len(tf.bullet_lines(response)) + len(tf.numbered_lines(response))
    if headers >= 2:
        return 5 if items >= 2 else 4
    if items >= 2:
        return 3
    return 2 if len(tf.paragraphs(response)) >= 2 else 1


def structure_match(response: str, intensity: int) -> float:
    """``1 - |structure_level - intensity| / 2``, clipped at 0; an empty response scores 0."""
    if not response.strip():
        return 0.0
    return max(0.0, 1.0 - abs(structure_level(response) - _check_level(intensity)) / 2)


BREVITY_INSTRUCTIONS: dict[int, str] = {
    5: "Answer in one short sentence (at most 15 words).",
    4: "Answer in exactly two short sentences (16 to 30 words in all).",
    3: "Answer in one paragraph of three or four sentences (30 to 60 words).",
    2: "Answer in one paragraph of five to seven sentences (60 to 100 words).",
    1: "Give a detailed answer in two or more paragraphs (more than 100 words).",
}
"""The plain-language request for each brevity level (the bands of :data:`BREVITY_BANDS`). Each names a count
of sentences and paragraphs beside the words: a 135M model follows those counts, not word counts (a tuned
SmolLM2, greedy, 16 train-split prompts x 5 levels: Spearman 0.69 asked for words alone, levels 1 and 2
inverted; 0.78 with the counts, every level's mean above the one before)."""

STRUCTURE_INSTRUCTIONS: dict[int, str] = {
    1: "Write plain prose in a single paragraph, with no lists and no headers.",
    2: "Write prose in two or more paragraphs, with no lists and no headers.",
    3: 'Answer as a bulleted list of three or more points, one per line, each line starting with "- ", and no headers.',
    4: 'Organise the answer in two or more sections, each opened by a header line such as "## Overview", and no lists.',
    5: (
        'Organise the answer in two or more sections, each opened by a header line such as "## Overview"; under '
        'the last header, list the key points as bullets (lines starting with "- ").'
    ),
}
"""The plain-language request for each structure level (the layouts of :data:`STRUCTURE_LEVELS`). The list
and header requests show the lines they ask for, as :func:`layout_variants` writes them: asked for
"Markdown headers (##)", the tuned 135M model answered with loops of empty "##" lines; shown a whole
header line, it copies one. A list request asks for three points, a margin over the two the level needs."""


def _check_level(intensity: Any) -> int:
    if isinstance(intensity, bool) or not isinstance(intensity, int | float) or intensity not in LEVELS:
        raise ValueError(f"intensity must be an integer from 1 to 5, got {intensity!r}")
    return int(intensity)


@dataclass(frozen=True)
class Dimension:
    """A controllable dimension: its name, how to measure it and how to score a match."""

    name: str
    measure: Callable[[str], int]
    match: Callable[[str, int], float]
    description: str
    instructions: Mapping[int, str]
    """The plain-language request for each level (what a tag means, spelled out)."""


DIMENSIONS: dict[str, Dimension] = {
    "brevity": Dimension(
        "brevity", brevity_level, brevity_match, "higher is shorter (word-count bands)", BREVITY_INSTRUCTIONS
    ),
    "structure": Dimension(
        "structure", structure_level, structure_match, "higher is more structured layout", STRUCTURE_INSTRUCTIONS
    ),
}


def spell_out_tags(prompt: str) -> str:
    """``prompt`` with its brevity/structure tags replaced by the plain-language requests they stand for.

    ``<brevity 5> Explain tides.`` becomes ``Explain tides. Answer in one short sentence (at most 15
    words).`` Tags of other dimensions stay as they are; a prompt without tags is returned unchanged.
    """
    text, tags = parse_tags(prompt)
    if not any(name in DIMENSIONS for name in tags):
        return prompt
    others = {name: level for name, level in tags.items() if name not in DIMENSIONS}
    requests = [DIMENSIONS[name].instructions[level] for name, level in tags.items() if name in DIMENSIONS]
    return format_tags(others, " ".join([text, *requests]))


CONTENT_EXPRESSION = "message['content']"
"""How a chat template reads a message's text (SmolLM2's, Qwen2.5's and Llama's templates all do)."""


def spelled_chat_template(template: str) -> str:
    """``template`` with each message's brevity/structure tags rendered as the plain requests they stand for,
    as :func:`spell_out_tags` does (the tags removed, the requests appended, brevity first), inside the
    template itself: every tokenizer that applies it (transformers, TRL, vLLM, moalign) shows the model the
    same words for a tag, and a saved model carries its own reading of its tags.

    Tags are matched in their canonical form (``<brevity 4>``, as :func:`moalign.tags.format_tags` writes
    them). Raises ValueError if the template does not read ``message['content']``.
    """
    if CONTENT_EXPRESSION not in template:
        raise ValueError(f"the chat template does not read {CONTENT_EXPRESSION}; its tags cannot be rendered")
    steps = []
    for name, dim in DIMENSIONS.items():
        for level, request in dim.instructions.items():
            tag, said = format_tags({name: level}), request.replace("'", "\\'")
            steps.append(
                f"{{%- if '{tag}' in ns.c -%}}{{%- set ns.c = ns.c | replace('{tag}', '') -%}}"
                f"{{%- set ns.r = ns.r ~ ' {said}' -%}}{{%- endif -%}}"
            )
    macro = (
        "{%- macro moalign_tags(c) -%}{%- if c is string -%}{%- set ns = namespace(c=c, r='') -%}"
        + "".join(steps)
        + "{{- (ns.c | trim) ~ ns.r -}}{%- else -%}{{- c -}}{%- endif -%}{%- endmacro -%}"
    )
    return macro + template.replace(CONTENT_EXPRESSION, f"moalign_tags({CONTENT_EXPRESSION})")


def measured_tags(prompt: str, response: str) -> dict[str, int] | None:
    """The prompt's tags with each brevity/structure intensity replaced by the level ``response`` measures,
    or None if the prompt has no brevity/structure tag (hindsight relabelling: see :func:`relabel_prompt`)."""
    _, tags = parse_tags(prompt)
    if not any(name in DIMENSIONS for name in tags):
        return None
    return {name: DIMENSIONS[name].measure(response) if name in DIMENSIONS else level for name, level in tags.items()}


def relabel_prompt(prompt: str, response: str) -> str | None:
    """``prompt`` re-tagged with the levels ``response`` measures, so the pair is right by construction.

    ``<brevity 5> Explain tides.`` with a 40-word response becomes ``<brevity 3> Explain tides.``. This is
    SteerLM's attribute-conditioned SFT (Dong et al., 2023) with measured instead of predicted
    attributes: every sample teaches what its tags mean, not only the one that matched the request.
    None if the prompt has no brevity/structure tag.
    """
    tags = measured_tags(prompt, response)
    return None if tags is None else format_tags(tags, parse_tags(prompt)[0])


def spread_tags(prompt: str, shift: int) -> str:
    """``prompt`` with each brevity/structure tag moved ``shift`` levels on (wrapping from 5 to 1), the k-th
    such dimension (alphabetical) by ``shift * k``, so the samples ``shift = 0..4`` of one prompt ask for
    every level of each dimension in different combinations. Other tags and untagged prompts stay as they are."""
    text, tags = parse_tags(prompt)
    order = {name: k for k, name in enumerate(sorted(DIMENSIONS), start=1)}
    moved = {
        name: (level - 1 + shift * order[name]) % len(LEVELS) + 1 if name in DIMENSIONS else level
        for name, level in tags.items()
    }
    return format_tags(moved, text) if moved != tags else prompt


def spread_requests(prompt: str, n: int, extra: Mapping[str, Mapping[int, int]] | None = None) -> list[str]:
    """The prompts the samples of one prompt ask with: :func:`spread_tags` shifts ``0..n-1``, then for each
    ``extra[dimension][level] = count`` that many more asking for ``level`` of a dimension the prompt is
    tagged with (their other dimensions moved on as shifts ``n, n+1, ...`` move them). Levels a model seldom
    reaches when asked once get more chances; a prompt without that dimension's tag gets no extra request."""
    requests = [spread_tags(prompt, j) for j in range(n)]
    text, tags = parse_tags(prompt)
    for name, counts in (extra or {}).items():
        if name not in tags:
            continue
        for level, count in sorted(counts.items()):
            for _ in range(count):
                moved = parse_tags(spread_tags(prompt, len(requests)))[1]
                requests.append(format_tags({**moved, name: level}, text))
    return requests


def sentence_prefixes(response: str, cut_off: bool = False) -> list[str]:
    """The longest prefix of ``response`` at each brevity level other than the whole response's, cut where a
    sentence or a line ends, among the prefixes of the same structure level (augmentation for hindsight
    relabelling: a long answer's first sentences are an answer of a shorter level; cuts that change the
    layout would flood the data with single paragraphs). A cut never leaves a header or a line ending in
    ``:`` last; a response with a code block gives none. Shortest first.

    ``cut_off``: the response stopped at the token budget, mid-sentence, so it is no answer itself; its
    longest finished prefix at its own level is included too (the longest answers, level 1, are mostly
    those a budget cut: 35 of 100 tagged samples at 160 tokens).
    """
    if tf.has_code_block(response):
        return []
    ends = {m.start() for m in tf.SENTENCE_END_RE.finditer(response)} | {
        i for i, ch in enumerate(response) if ch == "\n"
    }
    whole = _levels(response)
    best: dict[tuple[int, int], str] = {}
    for end in sorted(ends):
        prefix = response[:end].rstrip()
        last = prefix.rsplit("\n", 1)[-1].strip()
        if not tf.WORD_RE.search(prefix) or not last or last.endswith(":"):
            continue
        if tf.HEADER_RE.match(last) or tf.BOLD_LINE_RE.match(last):
            continue
        levels = _levels(prefix)
        if levels[1] == whole[1] and (levels != whole or cut_off):
            best[levels] = prefix  # later cuts are longer: keep the longest of each level
    return sorted(best.values(), key=len)


LAYOUT_HEADERS = ("## Overview", "## Details", "## Key points")
"""The section headers :func:`layout_variants` writes (first section, second prose section, list section)."""


def layout_variants(response: str) -> list[str]:
    """The same sentences of a prose response laid out at each other structure level (augmentation for
    hindsight relabelling of ``structure``, as :func:`sentence_prefixes` is for ``brevity``): one paragraph
    (1), two paragraphs split at the middle sentence (2), the first sentence then the others as ``- ``
    items (3), two sections under :data:`LAYOUT_HEADERS` (4), an overview section then a ``Key points``
    section listing the other sentences (5). Only a response that is prose (level 1 or 2) of at least four
    sentences has variants, and only those that measure the level they were built for; otherwise none.
    The words are the model's; the layout is not (marked as augmentation where used).
    """
    if tf.has_code_block(response):
        return []
    level = structure_level(response)
    sents = tf.sentences(response)
    if level > 2 or len(sents) < 4:
        return []
    half = len(sents) // 2
    first, second = " ".join(sents[:half]), " ".join(sents[half:])
    items = "\n".join(f"- {s}" for s in sents[1:])
    overview, details, key_points = LAYOUT_HEADERS
    built = {
        1: " ".join(sents),
        2: f"{first}\n\n{second}",
        3: f"{sents[0]}\n\n{items}",
        4: f"{overview}\n\n{first}\n\n{details}\n\n{second}",
        5: f"{overview}\n\n{sents[0]}\n\n{key_points}\n\n{items}",
    }
    return [text for n, text in built.items() if n != level and structure_level(text) == n]


def _levels(response: str) -> tuple[int, int]:
    return brevity_level(response), structure_level(response)


def requested_intensity(dimension: str, row: Mapping[str, Any]) -> int | None:
    """The intensity a record asks for in ``dimension``, or None if it does not ask.

    Read from the first present of: a ``tag_<dimension>`` column, a column named ``dimension``, a
    ``tags`` column (a mapping ``{"brevity": 4}`` or a tag string ``"<brevity 4>"``).
    """
    value = row.get(tag_column(dimension))  # the ``moalign.tags`` column convention
    if value is None:
        value = row.get(dimension)
    if value is None:
        tags = row.get("tags")
        if isinstance(tags, Mapping):
            value = tags.get(dimension)
        elif isinstance(tags, str):
            value = parse_tags(tags)[1].get(dimension)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return _check_level(value)
