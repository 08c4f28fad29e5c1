"""The one exception type for mistakes a user can fix (bad recipe, missing model, bad data).

The CLI turns a :class:`UserError` into one readable message and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input, reported as one message naming its source."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


def exception_summary(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, or its type name when the message is empty."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def decode_utf8(data: bytes, source: str, *, first_line: int = 1) -> str:
    """``data`` as text; a :class:`UserError` naming ``source:line`` and the offending byte if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 (byte 0x{data[exc.start]:02x} at column {column})"
        raise UserError(message, source=f"{source}:{line}") from None
