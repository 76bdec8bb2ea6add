"""Shared fixtures.

Services (PostgreSQL, MariaDB, RabbitMQ, Mosquitto, NATS, Redis) run on this machine. A
test that needs one asks `require_service("postgresql")`: when the service is down the
test is skipped with the reason, except under FLOWYARD_REQUIRE_SERVICES=1 (CI), where
that becomes a failure so service tests can never silently stop running.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (a red CI must be reproducible); developers'
# runs explore new ones, and report what they find with the seed to reproduce it.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"

SERVICES: dict[str, tuple[str, int, str]] = {
    "postgresql": ("127.0.0.1", 5432, "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
    "mariadb": ("127.0.0.1", 3306, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"),
    "redis": ("127.0.0.1", 6379, "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''"),
    "rabbitmq": ("127.0.0.1", 5672, "rabbitmq-server -detached"),
    "mosquitto": ("127.0.0.1", 1883, "mosquitto -d -c /etc/mosquitto/mosquitto.conf"),
    "nats": ("127.0.0.1", 4222, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server"),
}


def services_required() -> bool:
    return os.environ.get("FLOWYARD_REQUIRE_SERVICES") == "1"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(reason: str) -> None:
    """Skip, or fail under FLOWYARD_REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"{reason} (FLOWYARD_REQUIRE_SERVICES=1: service tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def service_unavailable() -> Callable[[str], None]:
    """`unavailable` for fixtures of a wider scope than `require_service`'s."""
    return unavailable


@pytest.fixture
def require_service() -> Callable[[str], tuple[str, int]]:
    def check(name: str) -> tuple[str, int]:
        host, port, start = SERVICES[name]
        if not port_open(host, port):
            unavailable(f"{name} is not running on {host}:{port}; start it with: {start}")
        return host, port

    return check


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        unavailable(f"the shared sample corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture
def flows_dir() -> Path:
    return ROOT / "flows"


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[..., Path]:
    """Write a flow file (and optional extra files) into a temporary folder."""

    def write(text: str, name: str = "flow.yaml", **files: str) -> Path:
        for rel, content in files.items():
            target = tmp_path / rel.replace("__", "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


# -- running on several workers (bin/test: pytest-xdist, --dist loadgroup) -------------

SHARED_SERVICES = ("connectors", "runtime", "hostile", "flowsrepo")
"""Folders whose tests use this machine's brokers, databases and ports, or time what a
real worker does: one worker runs them in turn, so two never share a queue, a topic or
the machine's cores."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's xdist group: the shared-services folders one group, the browser tests
    one (a Chromium and a server each), every other file its own (its tests in turn)."""
    for item in items:
        path = Path(str(item.fspath)).relative_to(ROOT / "tests")
        if path.parts[0] in SHARED_SERVICES:
            group = "shared-services"
        elif "browser" in path.name:
            group = "browser"
        else:
            group = path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))
