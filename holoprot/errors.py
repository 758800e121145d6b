"""Exceptions that the command line turns into one-line messages."""

from __future__ import annotations


class HoloprotError(Exception):
    """An error the user can act on: a one-line message naming the file or value at fault."""


class InputError(HoloprotError):
    """A structure or data file that cannot be read or holds nothing usable.

    Args:
        path: the offending file (or pattern) as the user gave it.
        problem: what is wrong with it, lower case, no trailing full stop.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
