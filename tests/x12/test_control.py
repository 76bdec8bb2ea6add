"""Control numbers are never reused: across restarts and across concurrent processes, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from flowyard.store import x12_control as control
from flowyard.store.database import make_engine
from flowyard.store.engines import get_engine

WORKERS = 4
EACH = 40


DRAW = """
import json, sys
from flowyard.store.database import make_engine
from flowyard.store import x12_control as control
engine = make_engine(sys.argv[1])
print(json.dumps([control.next_number(sys.argv[2], "ISA", engine) for _ in range(int(sys.argv[3]))]))
"""


def concurrent_numbers(url: str, partner: str) -> list[int]:
    """WORKERS separate Python processes draw EACH numbers at the same time."""
    workers = [subprocess.Popen([sys.executable, "-c", DRAW, url, partner, str(EACH)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(WORKERS)]
    numbers: list[int] = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()
        numbers.extend(json.loads(out))
    return numbers


def test_numbers_continue_after_a_restart(x12_db: Any) -> None:
    url = str(x12_db.url)
    first = [control.next_number("p1", "GS", x12_db) for _ in range(3)]
    restarted = make_engine(url)  # a new process would build a new engine
    assert control.next_number("p1", "GS", restarted) == first[-1] + 1
    assert control.next_number("p2", "GS", restarted) == 1  # per partner
    assert control.next_number("p1", "ST", restarted) == 1  # per kind


def test_numbers_wrap_after_nine_digits(x12_db: Any) -> None:
    control.next_number("wrap", "ISA", x12_db)
    with x12_db.begin() as connection:
        connection.execute(text("UPDATE x12_control_counter SET value = 999999999 WHERE partner = 'wrap'"))
    assert control.next_number("wrap", "ISA", x12_db) == 1


def test_concurrent_processes_on_sqlite(x12_db: Any) -> None:
    url = str(x12_db.url)
    numbers = concurrent_numbers(url, "sqlite-partner")
    assert len(numbers) == WORKERS * EACH
    assert sorted(numbers) == list(range(1, WORKERS * EACH + 1))


@pytest.mark.services
def test_concurrent_processes_on_postgresql(require_service: Callable[[str], Any]) -> None:
    require_service("postgresql")
    url = "postgresql://postgres@127.0.0.1:5432/test"
    get_engine(url)  # creates the tables
    partner = f"pg-{uuid.uuid4().hex[:12]}"
    numbers = concurrent_numbers(url, partner)
    assert sorted(numbers) == list(range(1, WORKERS * EACH + 1))
