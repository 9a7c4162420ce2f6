"""Errors raised to product code: each names the field and the problem."""

from __future__ import annotations

from typing import Any

SHOWN_CHARS = 80  # at most this much of a bad value is quoted in an error message


class LooperInputError(ValueError):
    """Bad input to the SDK; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownUseCaseError(LooperInputError):
    pass


class CommandError(Exception):
    """A user-facing command-line failure: printed without a traceback, exit code 2."""


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message: one line, ASCII-safe for strings (a lone
    surrogate is shown escaped), and cut to about ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > limit:
        text = repr(value[:limit])
        tail = f"... ({len(value)} characters)"
    else:
        text, tail = repr(value), ""
    if len(text) > limit + 2:
        text, tail = text[:limit], tail or "..."
    return text + tail


def shown_key(key: str) -> str:
    """A mapping key as part of a field name (``features.<key>``): the key itself when it
    is short valid text, else bounded and escaped as ``shown`` quotes it."""
    if len(key) <= SHOWN_CHARS and bad_text(key) is None:
        return key
    return shown(key)


def bad_text(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (it holds a lone surrogate), or None."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        return (
            f"is not valid Unicode text (a lone surrogate at position {exc.start}): {shown(value)}"
        )
    return None
