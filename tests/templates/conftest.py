from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "onboarding"
# a template checked in place (another test, in parallel) renders in a scratch folder
# beside it for a moment: a copy made meanwhile must not take it
SCRATCH = shutil.ignore_patterns(".onboard-preview-*")


@pytest.fixture
def onboarding(tmp_path: Path) -> Path:
    """A private copy of examples/onboarding (templates, instances, tables, tests)."""
    target = tmp_path / "onboarding"
    shutil.copytree(ONBOARDING, target, ignore=SCRATCH)
    return target


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """X12 steps keep control numbers and seen interchanges in the store: a fresh one
    per test keeps runs independent."""
    monkeypatch.setenv("FLOWYARD_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
