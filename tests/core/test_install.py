"""What a fresh install gives a user: a missing client or driver named with the one
command that brings it, no library's deprecation notice in the terminal, and a set-up
that waits for the machine's package lock instead of failing on it."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWYARD = str(Path(sys.executable).parent / "flowyard")


def python_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a Python where importing `module` fails as if it were not installed."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_a_connector_whose_client_is_missing_names_the_extra_to_install() -> None:
    result = python_without("asyncssh", (
        "import sys\nfrom flowyard.cli import main\n"
        "sys.exit(main(['validate', 'examples/connectors/supplierx-856-to-wms.yaml']))"
    ))
    assert result.returncode == 1, result.stderr
    assert "pip install 'flowyard[sftp]'" in result.stdout
    assert "internal error" not in result.stdout + result.stderr


def test_a_store_whose_driver_is_missing_names_the_extra_to_install() -> None:
    result = python_without("psycopg", (
        "import os, sys\nos.environ['FLOWYARD_DATABASE_URL'] = 'postgresql+psycopg://nobody@127.0.0.1:1/none'\n"
        "from flowyard.cli import main\nsys.exit(main(['dead-letters']))"
    ))
    assert result.returncode == 2
    assert "pip install 'flowyard[postgresql]'" in result.stderr
    assert "internal error" not in result.stderr


def test_every_shipped_connector_loads_on_a_default_install() -> None:
    from flowyard import registry

    assert set(registry.available_connectors()) == set(registry.connector_names())


def test_no_library_deprecation_notice_reaches_the_terminal() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([FLOWYARD, "validate", "examples/connectors"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr
    # Python's own -W still shows them to whoever asks
    shown = subprocess.run([FLOWYARD, "validate", "examples/connectors"], capture_output=True, text=True,
                           timeout=120, cwd=ROOT, env={**env, "PYTHONWARNINGS": "always"})
    assert "DSA is deprecated" in shown.stderr


LOCK = Path("/var/lib/dpkg/lock-frontend")


@pytest.fixture
def apt_lock_holder():  # type: ignore[no-untyped-def]
    """Holds the dpkg frontend lock the way apt does (an fcntl lock), as another apt run would."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None or not LOCK.exists():
        pytest.skip("needs root and Debian's apt-get (the set-up's package step is Debian's)")
    handle = LOCK.open("w")
    fcntl.lockf(handle, fcntl.LOCK_EX)
    yield handle
    handle.close()


def test_the_package_step_waits_for_another_apt_run(apt_lock_holder) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    proc = subprocess.Popen([str(ROOT / "bin" / "apt-install"), "--no-update", "coreutils"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    assert proc.poll() is None, "it gave up while the lock was held"
    apt_lock_holder.close()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "waiting" in err and time.monotonic() - started >= 4


def test_the_package_step_gives_up_with_a_clear_message(apt_lock_holder) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run([str(ROOT / "bin" / "apt-install"), "--no-update", "coreutils"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "FLOWYARD_APT_WAIT": "2"})
    assert result.returncode == 100
    assert "still holds the package lock after 2s" in result.stderr
