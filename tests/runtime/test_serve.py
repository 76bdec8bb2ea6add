"""`flowyard serve` as a user starts it: first start deploys the example flows and
processes their sample inputs; webhooks answer 202 once stored; /metrics reports;
`flowyard dead-letters` and `flowyard replay` work on what it stored; SIGTERM stops it
cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rthelp import ROOT, free_port, wait_sync

from flowyard.store.api import Store
from flowyard.store.database import make_engine

FLOWYARD = str(Path(sys.executable).parent / "flowyard")

HOOK_FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: hook-orders, labels: {plant: DE02}}
source:
  http: {allow_unauthenticated: true}
steps:
  - json.parse: {}
  - jmespath: "{id: id}"
targets:
  - file: {path: ../data/out/hook-orders}
"""

pytestmark = pytest.mark.slow



def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWYARD, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_serve_first_start_webhooks_metrics_dead_letters_and_replay(tmp_path: Path) -> None:
    for folder in ("flows", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "flows" / "hook-orders.yaml").write_text(HOOK_FLOW)
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / ".flowyard"),
           "FLOWYARD_METRICS_TOKEN": "serve-metrics-token-1"}
    env.pop("FLOWYARD_DATABASE_URL", None)
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([FLOWYARD, "serve", "--deploy-new", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_sync(lambda: _get(f"{base}/healthz") == 200, timeout=60, what="server up")
        engine = make_engine(f"sqlite:///{tmp_path / '.flowyard' / 'flowyard.db'}")
        store = Store(engine)
        flows = {f.flow for f in store.flows()}
        assert "hook-orders" in flows and len(flows) >= 3
        # the sample inputs of the example flows were processed: some good, some bad
        wait_sync(lambda: store.count_messages(state="done") >= 2
                  and store.dead_letters(), timeout=90, what="samples processed")
        response = httpx.post(f"{base}/hooks/hook-orders", json={"id": 42}, timeout=10)
        assert response.status_code == 202
        stored = store.message(response.json()["id"])
        assert stored is not None and stored.summary.flow == "hook-orders"
        assert httpx.post(f"{base}/hooks/nope", json={}, timeout=10).status_code == 404
        wait_sync(lambda: (m := store.message(response.json()["id"])) is not None
                  and m.summary.state == "done", timeout=30, what="webhook message done")
        assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}  # liveness for anyone
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401  # the rest behind the token
        scraper = {"Authorization": "Bearer serve-metrics-token-1"}
        assert "hook-orders" in httpx.get(f"{base}/healthz", headers=scraper, timeout=10).json()["flows"]
        metrics = httpx.get(f"{base}/metrics", headers=scraper, timeout=10).text
        assert 'flowyard_messages_total{flow="hook-orders",partner="",plant="DE02",state="done"}' \
            in metrics
        assert "flowyard_dead_letters_open" in metrics
        ui = httpx.get(f"{base}/", timeout=10)
        assert ui.status_code in (200, 302, 303)  # the web UI answers (login redirect)
        dead = store.dead_letters()[0]
        listed = run(["dead-letters"], env, tmp_path)
        assert listed.returncode == 0 and str(dead.id) in listed.stdout
        assert dead.reason.splitlines()[0][:40] in listed.stdout
        groups = run(["dead-letters", "--groups"], env, tmp_path)
        assert dead.flow in groups.stdout
        dry = run(["replay", str(dead.id), "--dry-run"], env, tmp_path)
        assert dry.returncode == 0 and "would run" in dry.stdout
        again = run(["replay", str(dead.id), "--who", "ana"], env, tmp_path)
        assert again.returncode == 0 and "replayed as" in again.stdout, again.stderr
        assert store.dead_letter(dead.id).status == "replayed"  # type: ignore[union-attr]
        missing = run(["replay", "no-such-message"], env, tmp_path)
        assert missing.returncode == 1 and "not replayed" in missing.stdout
        engine.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_first_start_frames_the_admin_password_last_and_logs_go_to_the_named_file(tmp_path: Path) -> None:
    """What `bin/serve` shows a new user: its own lines only, the one-time password last
    and framed; the JSON logs in the file it names; no library's deprecation notice."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / ".flowyard")}
    env.pop("FLOWYARD_DATABASE_URL", None)
    env.pop("PYTHONWARNINGS", None)
    port = free_port()
    terminal = tmp_path / "terminal.txt"
    log_file = tmp_path / "logs" / "serve.log"
    with terminal.open("wb") as out:
        proc = subprocess.Popen([FLOWYARD, "serve", "--deploy-new", "--port", str(port), "--log-file", str(log_file)],
                                cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            wait_sync(lambda: "+\n\n" in terminal.read_text(), timeout=60, what="the framed password")
            wait_sync(lambda: log_file.is_file() and "deployed " in log_file.read_text(), timeout=30,
                      what="deploy lines in the log file")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    shown = terminal.read_text()
    assert code == 0, shown
    assert "Deprecat" not in shown and "Traceback" not in shown
    assert not any(line.startswith("{") for line in shown.splitlines()), "JSON logs reached the terminal"
    lines = shown.rstrip().splitlines()
    assert lines[-1].startswith("+-") and lines[-1].endswith("-+")  # the frame closes the start-up output
    framed = [line.strip("| ").strip() for line in lines if line.startswith("| ")]
    password = framed[framed.index("First start: log in as 'admin' with the one-time password") + 1]
    assert len(password) >= 12 and " " not in password
    assert f"Flowyard is running at http://127.0.0.1:{port}/" in framed
    assert f"Logs: {log_file}" in framed
    logged = log_file.read_text()
    assert password not in logged  # shown once, never logged
    assert all(line.startswith("{") for line in logged.splitlines())
    assert "alembic" not in logged  # no line per migration step
