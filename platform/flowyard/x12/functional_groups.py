"""Which functional group (GS01) each transaction set (ST01) travels in.

The table is data, `functional_groups.yaml` beside this module (ST01: GS01, or a list of
the groups a set may travel in); it is read once. `x12.parse` rejects a set inside
another group; `x12.generate` writes GS01 from it when the guide does not name one.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..yamlio import load_text, to_plain

TABLE = Path(__file__).resolve().parent / "functional_groups.yaml"


@functools.lru_cache(maxsize=1)
def table() -> dict[str, frozenset[str]]:
    """ST01 -> the GS01 codes it may travel in."""
    raw = to_plain(load_text(TABLE.read_text(encoding="utf-8"), str(TABLE))) or {}
    out: dict[str, frozenset[str]] = {}
    for transaction, groups in raw.items():
        codes = groups if isinstance(groups, list) else [groups]
        out[str(transaction)] = frozenset(str(code) for code in codes)
    return out


def groups_of(transaction: str) -> frozenset[str] | None:
    """The GS01 codes a set may travel in; None for a set the table does not know."""
    return table().get(transaction)


def group_of(transaction: str) -> str | None:
    """The GS01 to write for a set (the first in alphabetical order when several)."""
    codes = groups_of(transaction)
    return min(codes) if codes else None


def wrong_group_code(version: str) -> str:
    """AK502/IK502 for a set in the wrong functional group: 18 (transaction set not in
    functional group) from 005010 on; the earlier code lists lack it, so 6 (missing or
    invalid transaction set identifier) before."""
    return "18" if version[:6] >= "005010" else "6"
