"""Small helpers over round-trip YAML documents (parse without raising)."""

from __future__ import annotations

from typing import Any

from flowyard.yamlio import YamlSyntaxError, load_text


def parse_or_none(text: str, file: str) -> Any:
    try:
        return load_text(text, file)
    except YamlSyntaxError:
        return None
