"""flowyard deploy / undeploy / deployments / rollback: the gate from the command line.

Each acts on the store of FLOWYARD_DATABASE_URL (the embedded one by default), through
the same operations as the UI's Deploy and `--deploy-from`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("deploy", help="deploy flows (or a changed table, template...) through the gate",
                       description="Deploy flow or instance files, folders of them, or a changed shared file "
                       "(a table, template, partner profile...: every deployed flow that uses it is deployed "
                       "again with it). Each must load on its own and pass its tests; a refused deploy changes "
                       "nothing that runs.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--note", default="", help="why (shown in the history)")
    p.add_argument("--who", default=None, help="who deploys (default: the login name)")
    p.add_argument("--commit", default="", help="the git commit the files are at (recorded)")
    p.set_defaults(handler=deploy)

    p = sub.add_parser("undeploy", help="stop running a flow (its files stay)")
    p.add_argument("name")
    p.add_argument("--note", default="")
    p.add_argument("--who", default=None)
    p.set_defaults(handler=undeploy)

    p = sub.add_parser("deployments", help="deployment history, newest first")
    p.add_argument("name", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(handler=deployments)

    p = sub.add_parser("rollback", help="run an earlier deployed version again, as it was deployed")
    p.add_argument("name")
    p.add_argument("version", nargs="?", help="the version (default: the one before the current)")
    p.add_argument("--note", default="")
    p.add_argument("--who", default=None)
    p.set_defaults(handler=rollback)


def deploy(args: argparse.Namespace) -> int:
    from ..operations.deployments import DeployRefused, deploy_paths
    from ..store.api import Store

    try:
        done = deploy_paths(Store(), list(args.paths), who=args.who or getpass.getuser(), note=args.note,
                            git_commit=args.commit)
    except DeployRefused as exc:
        print(f"refused: {exc.flow}", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  {reason}", file=sys.stderr)
        print("nothing changed: the running versions keep running", file=sys.stderr)
        return 1
    for info in done:
        print(f"deployed {info.flow} version {info.version}")
    return 0


def undeploy(args: argparse.Namespace) -> int:
    from ..operations.deployments import undeploy as stop
    from ..store.api import Store

    info = stop(Store(), args.name, who=args.who or getpass.getuser(), note=args.note)
    print(f"undeployed {info.flow} (version {info.version} stays in the history)")
    return 0


def deployments(args: argparse.Namespace) -> int:
    from ..store.api import Store

    rows = Store().deployments(args.name, limit=args.limit)
    for d in rows:
        if args.json:
            print(json.dumps(asdict(d)))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.at))
        commit = f" commit {d.git_commit[:12]}" if d.git_commit else ""
        note = f"  {d.note}" if d.note else ""
        print(f"{when}  {d.flow}  {d.action:<9} {d.version}  by {d.who or '-'}{commit}{note}")
    if not rows and not args.json:
        print("no deployments", file=sys.stderr)
    return 0


def rollback(args: argparse.Namespace) -> int:
    from ..operations.deployments import rollback as go_back
    from ..store.api import Store

    info = go_back(Store(), args.name, args.version, who=args.who or getpass.getuser(), note=args.note)
    print(f"rolled back {info.flow} to version {info.version}")
    return 0
