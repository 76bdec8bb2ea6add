"""Secret and environment references: `${secret:NAME}` and `${env:NAME}`.

References are checked for syntax when a flow loads and resolved only at run time, at
the moment a connector needs the value. Secrets come from environment variables or from
a secrets directory holding one file per secret. Every resolved value, of a
`${secret:}` and of an `${env:}` reference alike (an environment variable is as likely to
hold a token), is remembered by the process-wide redactor, which scrubs it and its
common encodings (base64, hex, URL encoding) from logs, errors, traces, stored payload
snapshots and anything the UI shows; a value under 4 characters only where it stands as
a whole word (see `Redactor`).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

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


SHORT = 4
"""A value shorter than this is redacted only where it stands as a whole word."""


def _base64_forms(raw: bytes) -> set[str]:
    """The value base64-encoded on its own (standard and URL-safe alphabets, with and
    without padding) and, for values long enough, the part of its encoding that is the
    same wherever it sits inside a longer base64 text (as in an echoed `user:secret`
    Basic credential): three alignments, the characters that depend on the neighbouring
    bytes dropped."""
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms |= {whole, whole.rstrip("=")}
        if len(raw) < 9:
            continue
        for shift in range(3):
            padded = b"\0" * shift + raw
            full = len(padded) // 3 * 3
            core = encode(padded[:full]).decode("ascii")[(0, 2, 3)[shift]:]
            if len(core) >= 8:
                forms.add(core)
    return forms


def encodings(value: str) -> set[str]:
    """The forms a secret commonly takes when a server or a library echoes it: itself,
    base64 (standard and URL-safe, padded or not), hex (lower and upper case) and URL
    encoding (quote and quote_plus)."""
    raw = value.encode("utf-8")
    forms = {value, raw.hex(), raw.hex().upper(), quote(value, safe=""), quote_plus(value), quote(value)}
    forms |= _base64_forms(raw)
    return {f for f in forms if f}


class Redactor:
    """Remembers resolved secret values and replaces them, and their common encodings
    (see `encodings`), with *** in any text.

    Values of SHORT (4) characters or more are replaced wherever they occur. A shorter
    value (a 1-3 character password or PIN) is replaced only where it stands as a whole
    word, that is not touching a letter, digit or underscore on either side: a secret
    "42" becomes *** in "pin=42" or "token 42 refused" but stays in "4200" and "x42y";
    replacing it inside every word and number would blank out ordinary text. Its
    encodings are treated the same way. A value made only of "*" is ignored (it would
    match the marker itself)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, value: str) -> None:
        if not value or not value.strip("*"):
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                self._pattern = self._compile(self._values)

    @staticmethod
    def _compile(values: set[str]) -> re.Pattern[str]:
        anywhere: set[str] = set()
        words: set[str] = set()
        for value in values:
            (words if len(value) < SHORT else anywhere).update(encodings(value))
        words -= anywhere
        parts = []
        if anywhere:
            parts.append("|".join(re.escape(v) for v in sorted(anywhere, key=len, reverse=True)))
        if words:
            alternatives = "|".join(re.escape(v) for v in sorted(words, key=len, reverse=True))
            parts.append(rf"(?<!\w)(?:{alternatives})(?!\w)")
        return re.compile("|".join(parts))

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
                value = self.environ[name]
                redactor.remember(value)  # redacted like a secret: it may well be a token
                return value
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
