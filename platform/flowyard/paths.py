"""Simple data paths such as `items[].uom` or `header.plant`, for reading and writing.

JMESPath reads but cannot write; steps that change values in place (lookup) use these
paths: dot-separated keys, where `key[]` visits every element of a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*|\"[^\"]+\")(\[\]|\[\*\])?$")


class PathSyntaxError(ValueError):
    pass


def parse_path(path: str) -> list[tuple[str, bool]]:
    if path.strip() in ("", "@"):
        return []
    parts: list[tuple[str, bool]] = []
    offset = 0
    for raw in path.split("."):
        match = _PART.match(raw.strip())
        if not match:
            raise PathSyntaxError(f"invalid path part {raw!r} at character {offset + 1}; write keys like items[].uom")
        parts.append((match.group(1).strip('"'), bool(match.group(2))))
        offset += len(raw) + 1
    return parts


def visit(
    data: Any, parts: list[tuple[str, bool]], change: Callable[[Any, str], Any], trail: str = ""
) -> Iterator[str]:
    """Call `change(value, where)` on every value the path reaches and store its result;
    yield the path of every place where the key was missing."""
    if not parts:
        return
    key, every = parts[0]
    rest = parts[1:]
    if not isinstance(data, dict):
        yield trail or "@"
        return
    here = f"{trail}.{key}" if trail else key
    if key not in data:
        yield here
        return
    if every:
        items = data[key]
        if items is None:
            return
        if not isinstance(items, list):
            yield f"{here} (not a list)"
            return
        for i, item in enumerate(items):
            where = f"{here}[{i}]"
            if rest:
                yield from visit(item, rest, change, where)
            else:
                items[i] = change(item, where)
    elif rest:
        yield from visit(data[key], rest, change, here)
    else:
        data[key] = change(data[key], here)
