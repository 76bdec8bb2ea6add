"""Guards for connectors that write or read files under a configured root."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from flowyard.errors import DeliveryError


@lru_cache(maxsize=256)
def _resolved(root: Path) -> Path:
    """A target's root is resolved once, not per message: resolving walks every component
    of the path (a system call each), which was a tenth of a worker's CPU per message."""
    return root.resolve()


_CONTROL = re.compile("[\x00-\x1f\x7f]")
MAX_NAME_BYTES = 255  # one component of a path, on every common file system


def printable_name(name: str) -> str:
    """A file name as text that can be logged and stored: bytes that are not UTF-8
    (kept as surrogates by the OS layer) and control characters are escaped."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no OS byte stands for
        raw = name.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_name(name: str) -> None:
    """A file name a template rendered must be one the file system can take: no NUL
    or other control character, text that is UTF-8, no part longer than 255 bytes.
    Refused names are a failed delivery that no retry can mend."""
    if _CONTROL.search(name):
        raise DeliveryError(f"file name '{printable_name(name)}' holds a control character (NUL, newline, ...)", retryable=False)
    if name.isascii() and len(name) <= MAX_NAME_BYTES:  # the common case
        return
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise DeliveryError(f"file name '{printable_name(name)}' is not valid text (a lone surrogate)", retryable=False) from None
    if any(len(part) > MAX_NAME_BYTES for part in encoded.replace(b"\\", b"/").split(b"/")):
        raise DeliveryError(f"file name '{printable_name(name)[:80]}'... has a part longer than {MAX_NAME_BYTES} bytes", retryable=False)


def inside(root: Path, name: str) -> Path:
    """Resolve `name` under `root`, refusing `..`, absolute names and symlinks that lead
    out, and names the file system cannot take (`check_name`)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DeliveryError(f"file name {name!r} must be relative to the target folder", retryable=False)
    check_name(name)
    if name.rstrip("/\\") != name or name in (".", ".."):
        raise DeliveryError(f"file name {name!r} names a folder, not a file", retryable=False)
    base = _resolved(root)
    if "/" not in name and "\\" not in name and name not in (".", ".."):
        plain = base / name  # one component: only a symlink by that name could lead out
        if not os.path.islink(plain):
            return plain
    candidate = (base / name).resolve()
    if not candidate.is_relative_to(base) or candidate == base:
        raise DeliveryError(f"file name {name!r} would leave the target folder {root}", retryable=False)
    return candidate
