"""Shared building blocks for the typed option models of steps and connectors.

A step or connector declares its options once as a pydantic model. From that one model
come validation of flow files, the JSON Schema (`flowyard schema`), the UI form and the
option reference in the docs. Field descriptions are written for analysts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from .secrets import REFERENCE_PATTERN


class Options(BaseModel):
    """Base of every option model: unknown options are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def spoken_duration(seconds: float | None) -> str:
    """A duration as an operator reads it: `45s`, `12 min`, `3.5 h`, `2.0 days`."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def parse_duration(value: Any) -> timedelta:
    """'250ms', '2s', '10m', '1h', '1d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"{value!r} is not a duration; write it like 500ms, 30s, 10m, 2h or 1d")


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$",
            "description": "a duration such as 500ms, 30s, 10m, 2h, 1d (a number means seconds)",
        }
    ),
]


def _must_be_reference(value: Any) -> Any:
    if isinstance(value, str) and REFERENCE_PATTERN.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(
        "a secret must not be written in the flow file; "
        "write a reference such as ${secret:NAME} or ${env:NAME}"
    )


SecretRef = Annotated[
    str,
    BeforeValidator(_must_be_reference),
    Field(json_schema_extra={"secret": True, "pattern": r"^\$\{(secret|env):[A-Za-z_][A-Za-z0-9_.-]*\}$"}),
]
"""An option that holds a credential: only a `${secret:NAME}`/`${env:NAME}` reference."""
