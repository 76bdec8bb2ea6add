"""Structured JSON logs: one object per line with the flow, message id and correlation
id when the record carries them (`log.info(..., extra=fields(message))`). Every line
passes through the secret redactor."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..message import Message
from ..secrets import RedactingFilter, redactor

CONTEXT_KEYS = ("flow", "flow_version", "message_id", "correlation_id", "step", "target",
                "attempt", "worker", "delivery_id", "dead_letter_id")


def fields(message: Message | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if message is not None:
        out.update(flow=message.flow, flow_version=message.flow_version,
                   message_id=message.id, correlation_id=message.correlation_id)
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return redactor.redact(json.dumps(entry, ensure_ascii=False, default=str))


def setup_json_logging(level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Replace the root handlers with one JSON line handler, on stderr or appending to
    `log_file` (then the terminal keeps only what the command says to its user)."""
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # a line per migration step
