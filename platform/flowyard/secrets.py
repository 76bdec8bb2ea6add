"""Secret and environment references: `${secret:NAME}` and `${env:NAME}`.

References are checked for syntax when a flow loads and resolved only at run time, at
the moment a connector needs the value. Secrets come from environment variables or from
a secrets directory holding one file per secret. Every resolved secret value is
remembered by the process-wide redactor, which scrubs it from logs, errors, traces,
stored payload snapshots and anything the UI shows.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import SecretError

REFERENCE_PATTERN = re.compile(r"\$\{(secret|env):([A-Za-z_][A-Za-z0-9_.-]*)\}")
ANY_REFERENCE = re.compile(r"\$\{([^}]*)\}")
REDACTED = "***"


def check_references(text: str) -> Iterator[tuple[int, str]]:
    """Yield (offset, problem) for every malformed `${...}` in a string."""
    for match in ANY_REFERENCE.finditer(text):
        body = match.group(1)
        if REFERENCE_PATTERN.fullmatch(match.group(0)):
            continue
        kind = body.split(":", 1)[0] if ":" in body else ""
        if kind and kind not in ("secret", "env"):
            problem = f"unknown reference kind {kind!r} in {match.group(0)!r}; use ${{secret:NAME}} or ${{env:NAME}}"
        else:
            problem = f"malformed reference {match.group(0)!r}; write ${{secret:NAME}} or ${{env:NAME}}"
        yield match.start(), problem


class Redactor:
    """Remembers resolved secret values and replaces them with *** in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, value: str) -> None:
        if len(value) < 4:  # a 1-3 character "secret" would blank out ordinary text
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

redactor = Redactor()


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs resolved secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redactor.redact(record.getMessage())
        record.args = None
        return True


class Secrets:
    """Resolves references from the environment and a secrets directory."""

    def __init__(self, directory: Path | None = None, environ: dict[str, str] | None = None):
        env_dir = os.environ.get("FLOWYARD_SECRETS_DIR")
        self.directory = directory or (Path(env_dir) if env_dir else None)
        self.environ = environ if environ is not None else os.environ

    def lookup(self, kind: str, name: str) -> str:
        if kind == "env":
            if name in self.environ:
                return self.environ[name]
            raise SecretError(f"environment variable {name} is not set (referenced as ${{env:{name}}})")
        if self.directory is not None:
            path = self.directory / name
            if path.is_file():
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
                redactor.remember(value)
                return value
        if name in self.environ:
            value = self.environ[name]
            redactor.remember(value)
            return value
        where = f" or a file {self.directory / name}" if self.directory else ""
        raise SecretError(
            f"secret {name} is not available: set the environment variable {name}{where}"
        )

    def resolve(self, value: Any) -> Any:
        """Replace every reference inside strings (recursively through dicts and lists)."""
        if isinstance(value, str):
            if "${" not in value:
                return value
            return REFERENCE_PATTERN.sub(lambda m: self.lookup(m.group(1), m.group(2)), value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value
