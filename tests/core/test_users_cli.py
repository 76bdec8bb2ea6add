"""`flowyard users ...`: the real command (`flowyard.cli.main`, in this process: a
`flowyard` process takes seconds to start, and one runs at a terminal below) on a real
SQLite store, and the UI's login on the accounts it made (one code path:
flowyard.store.users)."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from flowyard.cli import main
from flowyard.store.users import User, check_password

FLOWYARD = str(Path(sys.executable).parent / "flowyard")
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def users(store: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`flowyard users ARGS` with this stdin (not a terminal); its exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr, os.environ.get("FLOWYARD_DATABASE_URL")
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    os.environ["FLOWYARD_DATABASE_URL"] = store
    try:
        code = main(["users", *args])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved[:3]
        if saved[3] is None:
            os.environ.pop("FLOWYARD_DATABASE_URL", None)
        else:
            os.environ["FLOWYARD_DATABASE_URL"] = saved[3]
    return subprocess.CompletedProcess(["flowyard", "users", *args], code, out.getvalue(), err.getvalue())


def row(store: str, name: str) -> User | None:
    engine = create_engine(store)
    try:
        with Session(engine, expire_on_commit=False) as db:
            return db.scalar(select(User).where(User.username == name))
    finally:
        engine.dispose()


def test_add_from_stdin_list_set_role_disable(store: str) -> None:
    added = users(store, "add", "maria", "--role", "analyst", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added maria (analyst)"
    assert PASSWORD not in added.stdout + added.stderr
    user = row(store, "maria")
    assert user is not None and user.role == "analyst" and user.active
    assert check_password(user.password_hash, PASSWORD) and PASSWORD not in user.password_hash

    listed = users(store, "list")
    assert listed.returncode == 0
    assert listed.stdout.split()[:3] == ["maria", "analyst", "active"]

    changed = users(store, "set-role", "maria", "deployer")
    assert changed.returncode == 0 and changed.stdout.strip() == "maria: role analyst -> deployer"
    disabled = users(store, "disable", "maria")
    assert disabled.returncode == 0 and disabled.stdout.strip() == "maria: disabled"
    [entry] = [json.loads(line) for line in users(store, "list", "--json").stdout.splitlines()]
    assert entry["name"] == "maria" and entry["role"] == "deployer" and entry["active"] is False
    enabled = users(store, "enable", "maria")
    assert enabled.stdout.strip() == "maria: enabled"
    # each change is in the UI's audit log, by the login name that ran the command
    from flowyard.store.audit import AuditEntry

    engine = create_engine(store)
    try:
        with Session(engine) as db:
            entries = [(e.action, e.target, e.detail, e.username) for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    finally:
        engine.dispose()
    assert [e[:3] for e in entries] == [
        ("user-created", "maria", "role analyst"),
        ("user-changed", "maria", "role analyst -> deployer"),
        ("user-changed", "maria", "deactivated"),
        ("user-changed", "maria", "activated"),
    ]
    assert all(e[3].endswith("(flowyard users)") for e in entries)


def test_the_ui_logs_in_with_an_account_the_cli_made(store: str, tmp_path: Path) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD + "\n")
    assert users(store, "add", "ops", "--role", "deployer", "--password-file", str(secret)).returncode == 0
    from flowyard_ui import auth

    engine = create_engine(store)
    try:
        token = auth.login(engine, "ops", PASSWORD)
        me = auth.user_for_token(engine, token)
        assert me is not None and me.role == "deployer" and not me.must_change_password
        assert users(store, "disable", "ops").returncode == 0
        assert auth.user_for_token(engine, token) is None  # the disabled user's session ended
        with pytest.raises(auth.WrongPassword):
            auth.login(engine, "ops", PASSWORD)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "x", "--role", "boss"), PASSWORD, "unknown role 'boss'; roles are viewer, analyst, deployer, admin"),
        (("add", "x y", "--role", "viewer"), PASSWORD, "a user name is letters, digits, dots, dashes and underscores"),
        (("add", "x", "--role", "viewer"), "short", "the password needs at least 10 characters"),
        (("add", "x", "--role", "viewer", "--password-file", "/nonexistent/pw"), "", "cannot read the password file /nonexistent/pw"),
        (("set-role", "nobody", "viewer"), "", "no user named 'nobody'"),
        (("disable", "nobody"), "", "no user named 'nobody'"),
    ],
)
def test_refusals_say_why_and_change_nothing(store: str, args: tuple[str, ...], stdin: str, message: str) -> None:
    result = users(store, *args, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "short" not in result.stderr and PASSWORD not in result.stderr
    assert users(store, "list", "--json").stdout == ""


def test_a_duplicate_and_the_last_admin_are_refused(store: str) -> None:
    assert users(store, "add", "root", "--role", "admin", stdin=PASSWORD).returncode == 0
    again = users(store, "add", "root", "--role", "viewer", stdin=PASSWORD)
    assert again.returncode == 1 and "a user named 'root' already exists" in again.stderr
    for args in (("disable", "root"), ("set-role", "root", "viewer")):
        refused = users(store, *args)
        assert refused.returncode == 1 and "only active admin" in refused.stderr
    assert users(store, "add", "root2", "--role", "admin", stdin=PASSWORD).returncode == 0
    assert users(store, "set-role", "root", "viewer").returncode == 0
    user = row(store, "root")
    assert user is not None and user.role == "viewer"


def test_at_a_terminal_the_password_is_asked_twice_and_not_echoed(store: str) -> None:
    env = {**os.environ, "FLOWYARD_DATABASE_URL": store}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a terminal
        os.execve(FLOWYARD, [FLOWYARD, "users", "add", "tty", "--role", "viewer"], env)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            chunk = os.read(fd, 1024)
            if not chunk:
                raise AssertionError(f"no {marker!r} in {seen!r}")
            seen += chunk

    read_until(b"password: ")
    os.write(fd, PASSWORD.encode() + b"\n")
    read_until(b"again: ")
    os.write(fd, PASSWORD.encode() + b"\n")
    read_until(b"added tty")
    _pid, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PASSWORD.encode() not in seen
    user = row(store, "tty")
    assert user is not None and check_password(user.password_hash, PASSWORD)
