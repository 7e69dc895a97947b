"""Errors medzoo raises on bad input: each names the file (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class MedzooError(Exception):
    """Base class of every error medzoo raises on purpose."""


class InputError(MedzooError, ValueError):
    """Bad input data: an unreadable file, a wrong shape, values that make no sense.

    Args:
        problem: what is wrong, in words a user can act on.
        path: the offending file, when there is one; it is put first in the message.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class UnknownTaskError(MedzooError, KeyError):
    """No task is registered under the name given (a ``KeyError`` too, as a registry lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(MedzooError):
    """Shipped or user weights are missing, corrupt (checksum mismatch) or do not fit the model."""


class BatonError(MedzooError):
    """A relay baton is truncated, edited, foreign, for another task, from a newer format, or signed with another key."""


class MedzooWarning(UserWarning):
    """Something a user should know that does not stop the job (e.g. a model file whose integrity cannot be checked)."""
