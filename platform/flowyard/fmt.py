"""Stable formatting of YAML definitions, so that git diffs show only real changes.

The canonical layout is what `flowyard.yamlio` writes: two-space mappings, sequences
indented by two with the dash inside, no re-wrapping of long lines; key order, comments,
quoting, flow style (`{a: 1}`) and block scalars (`|`) are kept. `format_text` applies it
to any text and checks that the data did not change; it repeats until the output is a
fixed point, so `flowyard fmt` is idempotent by construction.

`save_text(document, original)` is how a tool (the UI, `flowyard onboard`) writes a
document it loaded: when the document is unchanged the original bytes come back, even if
the file was not in the canonical layout, so a save that changes nothing changes no byte.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import FlowyardError
from .yamlio import YamlSyntaxError, dump_text, load_text, to_plain

SUFFIXES = (".yaml", ".yml")
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".flowyard"}
MAX_PASSES = 5
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)


class FormatError(FlowyardError):
    """The file cannot be formatted without changing its data (or is not YAML)."""


def _same_data(a: Any, b: Any) -> bool:
    return bool(to_plain(a) == to_plain(b))


def format_text(text: str, file: str = "<text>") -> str:
    """The canonical layout of a YAML text; FormatError when it is not valid YAML or when
    formatting would change the data (never expected; checked anyway)."""
    try:
        original = load_text(text, file)
    except YamlSyntaxError as exc:
        raise FormatError(str(exc.issue)) from exc
    if original is None:
        return text if not text.strip() else text.rstrip() + "\n"
    current = dump_text(original)
    for _ in range(MAX_PASSES):
        stripped = _TRAILING_SPACE.sub("", current)
        try:
            if stripped != current and _same_data(load_text(stripped, file), original):
                current = stripped
        except YamlSyntaxError:
            pass
        current = current.rstrip("\n") + "\n"
        try:
            document = load_text(current, file)
        except YamlSyntaxError as exc:  # the dumper wrote something it cannot read
            raise FormatError(f"{file}: formatting would produce invalid YAML ({exc.issue.message}); left as it is") from exc
        if not _same_data(document, original):
            raise FormatError(f"{file}: formatting would change the data; left as it is")
        again = dump_text(document).rstrip("\n") + "\n"
        if again == current:
            return current
        current = again
    return current


def save_text(document: Any, original: str, file: str = "<text>") -> str:
    """The text to write for `document`, loaded from `original`: the original bytes when
    nothing changed, else the canonical dump, checked to read back as the same data
    (FormatError otherwise)."""
    new = dump_text(document)
    try:
        unchanged = dump_text(load_text(original, file)) == new
    except YamlSyntaxError:
        unchanged = False
    if unchanged:
        return original
    try:  # ruamel writes a few values it cannot read back (a plain `?x` in `{...}`)
        same = _same_data(load_text(new, file), document)
    except YamlSyntaxError as exc:
        raise FormatError(f"{file}: the document would be written as invalid YAML ({exc.issue.message}); quote the value") from exc
    if not same:
        raise FormatError(f"{file}: the document would not read back the same; nothing written")
    return new


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.suffix.lower() in SUFFIXES and child.is_file() and not any(p in SKIP_DIRS for p in child.relative_to(path).parts):
                    found.append(child)
        elif path.is_file():
            found.append(path)
    return found


def main(paths: list[Path], check: bool = False) -> int:
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"flowyard fmt: {path}: no such file or folder", file=sys.stderr)
    files = yaml_files(paths)
    changed = failed = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            formatted = format_text(text, str(path))
        except FormatError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        if formatted == text:
            continue
        changed += 1
        if check:
            print(f"would reformat {path}")
        else:
            path.write_text(formatted, encoding="utf-8")
            print(f"reformatted {path}")
    verb = "would be reformatted" if check else "reformatted"
    print(f"{len(files)} file(s), {changed} {verb}" + (f", {failed} could not be formatted" if failed else ""), file=sys.stderr)
    if missing or failed:
        return 1
    return 1 if check and changed else 0
