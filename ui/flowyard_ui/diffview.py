"""A unified diff as lines to show: one element per line (never run together), and the
same diff side by side (old on the left, new on the right) for wide screens."""

from __future__ import annotations

import re
from dataclasses import dataclass

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass
class Line:
    kind: str  # add | del | hunk | head | same
    text: str


@dataclass
class Pair:
    """One row of a side-by-side diff; a side is None where it has no line."""

    kind: str  # hunk | same | change
    old_no: int | None = None
    old: str | None = None
    new_no: int | None = None
    new: str | None = None


def lines(diff: str) -> list[Line]:
    out = []
    for text in diff.splitlines():
        if text.startswith(("+++", "---")):
            kind = "head"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        out.append(Line(kind, text))
    return out


def side_by_side(diff: str) -> list[Pair]:
    """The rows of the diff side by side: removed lines beside the added lines that
    replace them, unchanged lines on both sides, a row per hunk header."""
    rows: list[Pair] = []
    old_no = new_no = 0
    removed: list[tuple[int, str]] = []
    added: list[tuple[int, str]] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            o = removed[i] if i < len(removed) else None
            n = added[i] if i < len(added) else None
            rows.append(Pair("change", o[0] if o else None, o[1] if o else None, n[0] if n else None, n[1] if n else None))
        removed.clear()
        added.clear()

    for text in diff.splitlines():
        if text.startswith(("+++", "---")) and not removed and not added:
            continue
        found = HUNK.match(text)
        if found:
            flush()
            old_no, new_no = int(found.group(1)), int(found.group(2))
            rows.append(Pair("hunk", old=text, new=text))
        elif text.startswith("+"):
            added.append((new_no, text[1:]))
            new_no += 1
        elif text.startswith("-"):
            removed.append((old_no, text[1:]))
            old_no += 1
        elif text.startswith("\\"):
            continue
        else:
            flush()
            rows.append(Pair("same", old_no, text[1:], new_no, text[1:]))
            old_no += 1
            new_no += 1
    flush()
    return rows
