"""The pipeline as a readable picture: source -> steps -> targets, server-rendered HTML.

Built from the YAML document, not the loaded flow, so a flow with errors still shows
(the broken parts are marked). Option values are shortened; secrets are references in
the file and are shown as written (never resolved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowyard.definitions.grammar import SOURCE_COMMON_KEYS, STEP_COMMON_KEYS, TARGET_COMMON_KEYS, entry
from flowyard.yamlio import to_plain

SUMMARY_KEYS = (
    "path",
    "url",
    "host",
    "topic",
    "subject",
    "queue",
    "exchange",
    "query",
    "table",
    "schema",
    "template_file",
    "guide",
    "expression",
    "transaction",
    "cron",
    "every",
    "endpoint",
)


@dataclass
class Node:
    role: str  # source, step, target
    kind: str
    name: str = ""
    summary: str = ""
    when: str = ""
    line: int | None = None
    marked: bool = False
    details: list[str] = field(default_factory=list)


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(options: Any) -> str:
    if options is None:
        return ""
    if not isinstance(options, dict):
        return _short(options)
    for key in SUMMARY_KEYS:
        if key in options and options[key] not in (None, ""):
            return f"{key}: {_short(options[key])}"
    if options:
        key = next(iter(options))
        return f"{key}: {_short(options[key])}"
    return ""


def _entry(role: str, item: Any, common: tuple[str, ...], bad_lines: set[int]) -> Node | None:
    found = entry(item, common)
    if found is None or not found.keys:
        return None
    kind = found.keys[0]
    line = None
    lc = getattr(item, "lc", None)
    if lc is not None:
        try:
            line = lc.key(kind)[0] + 1
        except (KeyError, TypeError):
            line = None
    plain = to_plain(item)
    node = Node(
        role=role,
        kind=kind,
        name=str(plain.get("name") or ""),
        summary=_summary(plain.get(kind)),
        when=str(plain.get("when") or ""),
        line=line,
    )
    if line is not None and line in bad_lines:
        node.marked = True
    return node


def build(document: Any, bad_lines: set[int] | None = None) -> dict[str, Any]:
    """The nodes of the diagram: {'source': Node|None, 'steps': [...], 'targets': [...]}."""
    bad = bad_lines or set()
    if not isinstance(document, dict):
        return {"source": None, "steps": [], "targets": []}
    source = _entry("source", document.get("source"), SOURCE_COMMON_KEYS, bad)
    steps = [n for n in (_entry("step", s, STEP_COMMON_KEYS, bad) for s in (document.get("steps") or [])) if n]
    targets = [n for n in (_entry("target", t, TARGET_COMMON_KEYS, bad) for t in (document.get("targets") or [])) if n]
    for index, node in enumerate(steps, 1):
        node.name = node.name or f"{index}-{node.kind}"
    return {"source": source, "steps": steps, "targets": targets}
