"""Errors written for the analyst who has to fix the flow or the data.

Every error carries where it happened: a position in a file (flow, table, template,
guide) and/or a step of a flow and a place in the input (line, segment, element path).
The message itself never contains a resolved secret; callers pass text through the
secret redactor before it leaves the process.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Position:
    """A place in a text file; line and column are 1-based as editors show them."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass
class Issue:
    """One problem found in a definition file, reported as FILE:LINE:COL: message."""

    position: Position
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.position}: {prefix}{self.message}"


class FlowyardError(Exception):
    """Base of every error Flowyard reports to a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DefinitionError(FlowyardError):
    """A flow, template, table or guide file is invalid; carries every issue found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class InputLocation:
    """Where in a message's input a problem sits (any part may be unknown)."""

    line: int | None = None
    column: int | None = None
    path: str | None = None  # element path, JSON path or segment position
    segment: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.segment:
            parts.append(f"segment {self.segment}")
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.path:
            parts.append(f"at {self.path}")
        return ", ".join(parts)


class StepError(FlowyardError):
    """A step could not process a message: bad data, a missing code, a failed rule.

    Data errors are not retried: the message goes to the dead letters with this reason.
    """

    def __init__(
        self,
        message: str,
        *,
        where: InputLocation | None = None,
        details: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.where = where
        self.details = details or []
        self.step: str | None = None  # filled in by the engine
        self.step_index: int | None = None

    def describe(self) -> str:
        head = f"step {self.step!r}: " if self.step else ""
        where = f" ({self.where})" if self.where and str(self.where) else ""
        text = f"{head}{self.message}{where}"
        if self.details:
            text += "".join(f"\n  - {d}" for d in self.details)
        return text

    def __str__(self) -> str:
        return self.describe()


class DeliveryError(FlowyardError):
    """A target could not take a message; retried according to the target's policy."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class SecretError(FlowyardError):
    """A `${secret:...}` or `${env:...}` reference could not be resolved."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A suffix suggesting the closest valid name, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass
class IssueList:
    """Collects issues for one file so that all of them are reported, not only the first."""

    file: str
    issues: list[Issue] = field(default_factory=list)

    def add(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.issues.append(Issue(Position(self.file, line, column), message))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]
