"""Guards for connectors that write or read files under a configured root."""

from __future__ import annotations

from pathlib import Path

from flowyard.errors import DeliveryError


def inside(root: Path, name: str) -> Path:
    """Resolve `name` under `root`, refusing `..`, absolute names and symlinks that lead out."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DeliveryError(f"file name {name!r} must be relative to the target folder", retryable=False)
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise DeliveryError(f"file name {name!r} would leave the target folder {root}", retryable=False)
    return candidate
