"""`flowyard serve` for the browser tests: a real process on a free port, serving a
flows folder the test prepared (deployed at start with --deploy-new), and the first
admin's one-time password it printed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
FLOWYARD = Path(sys.executable).parent / "flowyard"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(tmp_path: Path, flows: Path, start_timeout: float = 60) -> Iterator[dict[str, Any]]:
    """Run `flowyard serve` on `flows` until the block ends; yields the base URL, the
    flows folder, the one-time password and the log file. `start_timeout`: seconds to
    wait for it to answer (it deploys the folder's flows first)."""
    port = free_port()
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / "data")}
    env.pop("FLOWYARD_DATABASE_URL", None)
    log_path = tmp_path / "serve.log"
    log = log_path.open("w+")
    process = subprocess.Popen(
        [str(FLOWYARD), "serve", "--deploy-new", "--flows", str(flows), "--port", str(port), "--text-logs", "--no-samples"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.3)
        found = None
        while True:  # the password is printed last, maybe after /login first answers
            log.seek(0)
            output = log.read()
            found = re.search(r"one-time password[^\n]*\n\|\s+(\S+)", output)  # the line under it, framed
            if found or process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found, f"flowyard serve printed no one-time password:\n{output[-3000:]}"
        yield {"base": base, "flows": flows, "password": found.group(1), "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(path: Path, seconds: float = 45) -> Any:
    """The JSON a file the runtime writes holds, once it is there."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert path.exists(), f"{path} was not written"
    return json.loads(path.read_text())


def first_login(page: Any, password: str, user: str = "admin", new: str = "a long admin password") -> None:
    """On the login page: log in with a one-time password and set a new one, as a first
    login must; ends on the flows list."""
    from playwright.sync_api import expect

    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/account/password"))
    page.get_by_label("Current password").fill(password)
    page.get_by_label("New password (10 characters or more)").fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Save password").click()
    expect(page).to_have_url(re.compile(r"/flows$"))
