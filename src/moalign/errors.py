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
