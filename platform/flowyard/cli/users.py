"""flowyard users add / list / set-role / disable / enable: the web UI's accounts without
the browser, for provisioning and scripts.

They act on the store of FLOWYARD_DATABASE_URL (the embedded one by default) through
`flowyard.store.users`, the code the UI's admin page uses. A password is read from
`--password-file`, else from stdin when it is not a terminal (one line), else asked twice
at the terminal; it is never printed. The one-time admin password of the first start
stays as it is (`flowyard serve` prints it).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("users", help="the web UI's users: add, list, set-role, disable, enable",
                       description="Manage the web UI's users without the browser (the store of "
                       "FLOWYARD_DATABASE_URL). Roles: viewer < analyst < deployer < admin.")
    users_sub = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = users_sub.add_parser("add", help="add a user",
                               description="Add a user. The password comes from --password-file, else from "
                               "stdin when it is not a terminal, else it is asked twice; it is never printed.")
    add.add_argument("name", help="the user name (letters, digits, dots, dashes, underscores)")
    add.add_argument("--role", required=True, help="viewer, analyst, deployer or admin")
    add.add_argument("--password-file", type=Path, default=None, metavar="FILE",
                     help="a file whose first line is the password")
    add.add_argument("--display-name", default="", help="the name the UI shows (default: the user name)")
    add.add_argument("--must-change", action="store_true",
                     help="the user must choose their own password at first login")
    add.set_defaults(handler=handle_add)

    ls = users_sub.add_parser("list", help="list the users")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(handler=handle_list)

    role = users_sub.add_parser("set-role", help="give a user another role")
    role.add_argument("name")
    role.add_argument("role", help="viewer, analyst, deployer or admin")
    role.set_defaults(handler=handle_set_role)

    off = users_sub.add_parser("disable", help="disable a user (their sessions end at once)")
    off.add_argument("name")
    off.set_defaults(handler=handle_disable)

    on = users_sub.add_parser("enable", help="enable a disabled user again")
    on.add_argument("name")
    on.set_defaults(handler=handle_enable)


def _fail(message: str) -> int:
    print(f"flowyard users: {message}", file=sys.stderr)
    return 1


def read_password(password_file: Path | None) -> str:
    """The new password: the first line of the file, else one line of stdin when it is
    not a terminal, else asked twice. ValueError (said for the person) when it cannot be
    had."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the password file {password_file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"the password file {password_file} is not UTF-8 text") from exc
        lines = text.splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    second = getpass.getpass("again: ")
    if first != second:
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def _engine() -> Any:
    from ..store.engines import get_engine

    return get_engine()


def _audit(engine: Any, action: str, target: str, detail: str) -> None:
    """The change in the UI's audit log, by the login name that ran the command."""
    from ..store import audit

    audit.record(engine, f"{getpass.getuser()} (flowyard users)", action, target, detail)


def handle_add(args: argparse.Namespace) -> int:
    from ..store import users

    try:
        users.check_username(args.name)
        users.check_role(args.role)
        password = read_password(args.password_file)
        engine = _engine()
        users.create_user(engine, args.name, password, args.role, display_name=args.display_name,
                          must_change=args.must_change)
    except (ValueError, users.UserError) as exc:
        return _fail(str(exc))
    _audit(engine, "user-created", args.name.strip(), f"role {args.role}")
    print(f"added {args.name.strip()} ({args.role})")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    from ..store import users

    found = users.list_users(_engine())
    if args.json:
        for u in found:
            print(json.dumps({
                "name": u.username, "display_name": u.display_name, "role": u.role, "active": u.active,
                "must_change_password": u.must_change_password,
                "last_login": u.last_login.isoformat() if u.last_login else None,
            }))
        return 0
    if not found:
        print("no users yet (`flowyard serve` creates admin at the first start)")
        return 0
    width = max(len(u.username) for u in found)
    for u in found:
        state = "active" if u.active else "disabled"
        notes = [state]
        if u.must_change_password:
            notes.append("must change password")
        if u.last_login:
            notes.append(f"last login {u.last_login:%Y-%m-%d %H:%M} UTC")
        name = f" ({u.display_name})" if u.display_name and u.display_name != u.username else ""
        print(f"{u.username:<{width}}  {u.role:<8}  {', '.join(notes)}{name}")
    return 0


def handle_set_role(args: argparse.Namespace) -> int:
    from ..store import users

    engine = _engine()
    try:
        old = users.set_role(engine, args.name, args.role)
    except users.UserError as exc:
        return _fail(str(exc))
    if old != args.role:
        _audit(engine, "user-changed", args.name, f"role {old} -> {args.role}")
    print(f"{args.name}: role {old} -> {args.role}" if old != args.role else f"{args.name}: already {args.role}")
    return 0


def _set_active(name: str, active: bool) -> int:
    from ..store import users

    engine = _engine()
    try:
        changed = users.set_active(engine, name, active)
    except users.UserError as exc:
        return _fail(str(exc))
    if changed:
        _audit(engine, "user-changed", name, "activated" if active else "deactivated")
    word = "enabled" if active else "disabled"
    print(f"{name}: {word}" if changed else f"{name}: already {word}")
    return 0


def handle_disable(args: argparse.Namespace) -> int:
    return _set_active(args.name, False)


def handle_enable(args: argparse.Namespace) -> int:
    return _set_active(args.name, True)
