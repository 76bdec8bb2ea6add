"""A unified diff as lines to show: one element per line (never run together), and the
same diff side by side (old on the left, new on the right) for wide screens."""

from __future__ import annotations

import re
from dataclasses import dataclass

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _body_lines(diff: str) -> list[tuple[str, bool]]:
    """Each line of the diff, and whether it is inside a hunk: counted by the hunk
    header's lengths, so a removed line that reads `--- x` (`---- x` in the diff) is
    content, not a file header."""
    out = []
    old_left = new_left = 0
    for text in diff.splitlines():
        if old_left > 0 or new_left > 0:
            out.append((text, True))
            if text.startswith("-"):
                old_left -= 1
            elif text.startswith("+"):
                new_left -= 1
            elif not text.startswith("\\"):
                old_left -= 1
                new_left -= 1
            continue
        found = HUNK.match(text)
        if found:
            old_left = int(found.group(2) if found.group(2) is not None else 1)
            new_left = int(found.group(4) if found.group(4) is not None else 1)
        out.append((text, False))
    return out


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
    for text, inside in _body_lines(diff):
        if not inside and text.startswith(("+++", "---")):
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

    for text, inside in _body_lines(diff):
        if not inside and text.startswith(("+++", "---")):
            continue
        found = None if inside else HUNK.match(text)
        if found:
            flush()
            old_no, new_no = int(found.group(1)), int(found.group(3))
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
