"""Errors raised to product code: each names the field and the problem."""

from __future__ import annotations


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
