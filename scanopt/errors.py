"""Errors raised for user mistakes.

Every error a user can cause derives from :class:`ScanError`. When it concerns a line of the user's
step function, the message starts with ``file:line:col: error:``, shows that line with a caret under
the offending column, and ends with what to do instead::

    rnn.py:12:8: error: `if` on an array value is not supported inside a step function
        if h.sum() > 0:
           ^
    Select elementwise with np.where(cond, a, b) instead.
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLocation:
    """A position in the user's source: absolute 1-based line, 1-based column."""

    filename: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col}"

    def source_line(self) -> str:
        return linecache.getline(self.filename, self.line).rstrip("\n")


class ScanError(Exception):
    """Base class of every error scanopt raises for a user mistake."""

    def __init__(self, message: str, loc: SourceLocation | None = None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        # The first line of the message goes with the location; the source line and caret
        # follow it, then the rest of the message (details), then the hint.
        first, _, details = self.message.partition("\n")
        if self.loc is None:
            text = f"error: {first}"
        else:
            text = f"{self.loc}: error: {first}"
            line = self.loc.source_line()
            if line:
                stripped = line.lstrip()
                indent = len(line) - len(stripped)
                caret_col = max(self.loc.col - 1 - indent, 0)
                text += f"\n    {stripped}\n    {' ' * caret_col}^"
        if details:
            text += f"\n{details}"
        if self.hint:
            text += f"\n{self.hint}"
        return text


class UnsupportedSyntax(ScanError):
    """A construct outside the subset of Python/NumPy that a step function may use."""


class ScanTypeError(ScanError):
    """A value has the wrong dtype or shape, e.g. a carry whose type changes across a step."""


class ScanValueError(ScanError):
    """A bad argument value: n_steps, the number of returned values, ..."""


class NumbaWarning(UserWarning):
    """backend="numba" left a loop as NumPy code (the message says why); its results are still
    the plain loop's. ``warnings.simplefilter("error", scanopt.NumbaWarning)`` makes it an
    error."""
