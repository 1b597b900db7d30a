"""The one error type that the command line turns into a one-line message and exit 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, the place (line or key) and what is expected.

    ``str(err)`` is the whole one-line message, e.g.
    ``trace.jsonl:12: in.align: expected a power of two from 1 to 2^63, got 3``.
    """

    def __init__(self, source: str, where: str | int | None, message: str) -> None:
        self.source = source
        self.where = where
        self.message = message
        place = f"{source}:{where}" if where not in (None, "") else source
        super().__init__(f"{place}: {message}")
