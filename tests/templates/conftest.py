from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "onboarding"


@pytest.fixture
def onboarding(tmp_path: Path) -> Path:
    """A private copy of examples/onboarding (templates, instances, tables, tests)."""
    target = tmp_path / "onboarding"
    shutil.copytree(ONBOARDING, target)
    return target


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """X12 steps keep control numbers and seen interchanges in the store: a fresh one
    per test keeps runs independent."""
    monkeypatch.setenv("FLOWYARD_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
