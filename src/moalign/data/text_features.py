"""Measurements of a response's text: words, sentences, paragraphs, bullets, headers, code blocks.

The constraints and the controllable dimensions of the task suite are all defined in terms of these few
functions, so they agree on what a "word" or a "bullet point" is. Readings taken: a word is a run of word
characters with inner apostrophes or hyphens; fenced code blocks are not prose; a bullet is ``-``, ``*``,
``+`` or ``•`` and a space, a numbered item ``1.`` or ``1)``; a header is ``## Title`` (or, for
:func:`header_lines`, a bold-only line); a paragraph is prose separated by a blank line.

Notes: docs/papers.md#datatext_featurespy.
"""

from __future__ import annotations

import re

WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
BULLET_RE = re.compile(r"^\s*[-*+•]\s+\S")
NUMBERED_RE = re.compile(r"^\s*\d{1,3}[.)]\s+\S")
HEADER_RE = re.compile(r"^\s{0,3}#{1,6}\s+\S")
BOLD_LINE_RE = re.compile(r"^\s*\*\*[^*\n]+\*\*:?\s*$|^\s*__[^_\n]+__:?\s*$")
SENTENCE_END_RE = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")


def prose(text: str) -> str:
    """``text`` with fenced code blocks (fences included) removed."""
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        if FENCE_RE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            out.append(line)
    return "\n".join(out)


def has_code_block(text: str) -> bool:
    """Whether ``text`` has a fenced code block (a line opening with three backticks or tildes)."""
    return any(FENCE_RE.match(line) for line in text.splitlines())


def words(text: str) -> list[str]:
    """The words of ``text`` (code included: a word in a code block is still a word)."""
    return WORD_RE.findall(text)


def word_count(text: str) -> int:
    return len(words(text))


def sentences(text: str) -> list[str]:
    """Sentences of the prose: split after ``. ! ? …`` and at line breaks; pieces without a word are dropped.

    Abbreviations such as "e.g." split a sentence; that simple reading is kept on purpose, as in IFEval.
    """
    pieces: list[str] = []
    for line in prose(text).splitlines():
        pieces.extend(SENTENCE_END_RE.split(line))
    return [p.strip() for p in pieces if WORD_RE.search(p)]


def paragraphs(text: str) -> list[str]:
    """Blocks of prose separated by blank lines (code blocks removed, whitespace-only blocks dropped)."""
    return [block.strip() for block in re.split(r"\n\s*\n", prose(text)) if block.strip()]


def bullet_lines(text: str) -> list[str]:
    """Markdown bullet lines (``-``, ``*``, ``+``, ``•``) outside code blocks."""
    return [line for line in prose(text).splitlines() if BULLET_RE.match(line) and not BOLD_LINE_RE.match(line)]


def numbered_lines(text: str) -> list[str]:
    """Numbered list items (``1.`` / ``1)``) outside code blocks."""
    return [line for line in prose(text).splitlines() if NUMBERED_RE.match(line)]


def header_lines(text: str, *, include_bold: bool = False) -> list[str]:
    """Markdown ATX headers outside code blocks; with ``include_bold``, bold-only lines count too."""
    lines = prose(text).splitlines()
    return [ln for ln in lines if HEADER_RE.match(ln) or (include_bold and BOLD_LINE_RE.match(ln))]


def cased_letters(text: str) -> list[str]:
    """Letters that have an upper and a lower case (Latin, Greek, Cyrillic, ...; not CJK or digits)."""
    return [c for c in text if c.lower() != c.upper()]
