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
