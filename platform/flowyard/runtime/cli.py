"""`flowyard serve`, `flowyard worker`, `flowyard dead-letters`, `flowyard replay`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..budget import parse_size
from ..errors import FlowyardError
from ..heap import freeze_startup_objects
from ..options import parse_duration
from ..secrets import redactor

log = logging.getLogger("flowyard.runtime")


def at_least_one(text: str) -> int:
    """A count that must be 1 or more: with 0, a worker would start and never process."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: it must be 1 or more")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: a lease must last some time")
    return value


def register(sub: Any) -> None:
    for name, help_text in (
        ("serve", "the runtime and the web UI in one process (embedded SQLite by default)"),
        ("worker", "the runtime alone; several workers share one PostgreSQL store"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--flows", default="flows",
                       help="the flows folder: drafts for the UI, and what --deploy-new and "
                       "--deploy-from deploy (default ./flows)")
        p.add_argument("--deploy-new", action="store_true",
                       help="at start, deploy (through the gate) every flow of --flows never deployed")
        p.add_argument("--deploy-from", metavar="REF", default=None,
                       help="follow a git ref (e.g. origin/main): deploy what its commit holds "
                       "under --flows, through the gate, whenever it moves")
        p.add_argument("--deploy-poll", type=positive_seconds, default=10.0,
                       help="with --deploy-from: seconds between looks at the ref (default 10)")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=8080 if name == "serve" else None,
                       help="HTTP port for the UI, /metrics and /hooks/FLOW"
                       + ("" if name == "serve" else " (default: no HTTP server)"))
        p.add_argument("--processors", type=at_least_one, default=2,
                       help="concurrent processing loops (default 2)")
        p.add_argument("--batch", type=at_least_one, default=200,
                       help="messages claimed at once (default 200)")
        p.add_argument("--no-sources", action="store_true",
                       help="process and deliver only; run no source here")
        p.add_argument("--trace", choices=("all", "failed", "none"), default="all",
                       help="which messages keep step snapshots (default all)")
        p.add_argument("--lease", type=positive_seconds, default=30.0,
                       help="seconds a claim holds without a heartbeat (default 30)")
        p.add_argument("--stall-after", type=positive_seconds, default=60.0,
                       help="seconds without progress (event loop, worker threads, claimed work) "
                       "after which /healthz says unhealthy (default 60)")
        p.add_argument("--grace", type=positive_seconds, default=20.0,
                       help="seconds a SIGTERM leaves in-flight batches to finish before the "
                       "process exits, whatever a step is doing (default 20)")
        p.add_argument("--budget-time", type=positive_seconds, default=None,
                       help="the longest a message may take in a flow's steps when the flow's "
                       "budget: does not say (default 30)")
        p.add_argument("--budget-memory", type=parse_size, default=None,
                       help="the most the process may grow while a message runs in a flow's "
                       "steps when the flow's budget: does not say (256MB, 2GB; default 1GB)")
        p.add_argument("--event-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                       help="the event loop: uvloop where installed (auto, the default), or "
                       "Python's own (asyncio)")
        p.add_argument("--text-logs", action="store_true", help="plain log lines, not JSON")
        p.add_argument("--log-file", type=Path, default=None,
                       help="write the JSON logs to this file instead of the terminal")
        if name == "serve":
            p.add_argument("--no-samples", action="store_true",
                           help="on first start, do not copy the flows' sample inputs in")
        p.set_defaults(handler=serve if name == "serve" else worker, mode=name)

    p = sub.add_parser("dead-letters", help="list dead letters",
                       description="List dead letters, newest first, or grouped by reason.")
    p.add_argument("--flow", help="only this flow")
    p.add_argument("--reason", help="reason contains this text")
    p.add_argument("--status", default="open", choices=("open", "replayed", "discarded", "all"))
    p.add_argument("--since", help="only the last DURATION (30m, 2h, 7d)")
    p.add_argument("--groups", action="store_true", help="count by flow and reason")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--show", action="store_true", help="print each input and trace")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(handler=dead_letters)

    p = sub.add_parser("replay", help="replay dead letters or messages",
                       description="Replay dead letters (numeric ids) or messages (message "
                       "ids) as new messages with the same correlation id.")
    p.add_argument("ids", nargs="*", help="dead letter ids or message ids")
    p.add_argument("--version", default="failed",
                   help="failed (the version it failed on, default), current, or a version")
    p.add_argument("--all", action="store_true",
                   help="every open dead letter matching --flow/--reason")
    p.add_argument("--flow", help="with --all: only this flow")
    p.add_argument("--reason", help="with --all: reason contains this text")
    p.add_argument("--dry-run", action="store_true", help="show the output difference only")
    p.add_argument("--force", action="store_true",
                   help="replay dead letters that were replayed or discarded already (their outputs "
                   "go out with the idempotency keys of the first replay)")
    p.add_argument("--who", default=None, help="who replays (default: the login name)")
    p.set_defaults(handler=replay)


# -- runtime commands ---------------------------------------------------------------


def configure_logging(args: argparse.Namespace) -> None:
    if not args.text_logs:
        from .logs import setup_json_logging

        setup_json_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_file)
    else:
        logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)


def runtime_config(args: argparse.Namespace) -> Any:
    from .runtime import RuntimeConfig

    return RuntimeConfig(
        flows_dir=Path(args.flows).resolve(), mode=args.mode, batch=args.batch,
        processors=args.processors, run_sources=not args.no_sources, trace=args.trace,
        lease_ttl=args.lease, stall_after=args.stall_after, grace=args.grace,
        **({"budget_time": args.budget_time} if args.budget_time else {}),
        **({"budget_memory": args.budget_memory} if args.budget_memory else {}),
    )


def seed_samples(flows_dir: Path) -> list[Path]:
    """First start: copy each file-source flow's test inputs into its source folder, so
    the runtime has real work to show."""
    from ..definitions.kinds import flow_files
    from ..loader import load_flows

    copied = []
    for path in flow_files(flows_dir):
        try:
            flows = load_flows(path)  # several for an instance whose template gives several
        except FlowyardError:
            continue
        for flow in flows:
            if flow.source.kind != "file":
                continue
            inbox = (path.parent / flow.source.options.path).resolve()
            for test in flow.tests:
                sample = (path.parent / test.input).resolve()
                if not sample.is_file():
                    continue
                inbox.mkdir(parents=True, exist_ok=True)
                target = inbox / sample.name
                if not target.exists():
                    shutil.copyfile(sample, target)
                    copied.append(target)
    return copied


def deploy_new_flows(store: Any, flows_dir: Path) -> None:
    from ..operations.deployments import deploy_new

    if not flows_dir.is_dir():
        log.warning("--deploy-new: no flows folder at %s", flows_dir)
        return
    done, refused = deploy_new(store, flows_dir, who="flowyard serve --deploy-new")
    for info in done:
        log.info("deployed %s version %s (new in %s)", info.flow, info.version, flows_dir,
                 extra={"flow": info.flow, "flow_version": info.version})
    for path, reason in refused.items():
        log.error("not deployed %s (refused by the gate):\n%s", path, reason)


def serve(args: argparse.Namespace) -> int:
    configure_logging(args)
    return run_on_event_loop(run_runtime(args, with_ui=True), args.event_loop)


def worker(args: argparse.Namespace) -> int:
    configure_logging(args)
    return run_on_event_loop(run_runtime(args, with_ui=False), args.event_loop)


def event_loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(the loop's name, its factory; None for asyncio's own). `auto` takes uvloop where
    it is installed: with httptools it carried a worker on bench/runtime.py's flow and
    load from about 1,150 to 1,550 messages/s (asyncio's loop does its socket and timer
    bookkeeping in Python, under the GIL the steps and the store need)."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("flowyard: --event-loop uvloop: uvloop is not installed") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run_on_event_loop(main: Coroutine[Any, Any, int], choice: str) -> int:
    name, factory = event_loop_factory(choice)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def run_runtime(args: argparse.Namespace, *, with_ui: bool) -> int:
    from ..store.api import Store
    from .runtime import Runtime

    store = Store()
    config = runtime_config(args)
    if with_ui and not getattr(args, "no_samples", False) and not store.deployments(limit=1):
        copied = seed_samples(config.flows_dir)
        if copied:
            log.info("first start: copied %d sample inputs into the flows' inboxes", len(copied))
    if args.deploy_new:
        await asyncio.to_thread(deploy_new_flows, store, config.flows_dir)
    runtime = Runtime(store, config)
    await runtime.start()
    if args.deploy_from:
        from .gitops import GitFollower

        follower = GitFollower(store, config.flows_dir, args.deploy_from, args.deploy_poll)
        runtime.tasks.append(asyncio.create_task(follower.run(runtime.stopping)))
    freeze_startup_objects()  # here, not in Runtime: a test process must not freeze its heap
    try:
        if args.port:
            await serve_http(runtime, args, with_ui)
        else:
            await wait_for_signal()
    finally:
        await runtime.stop()
    return 0


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_http(runtime: Any, args: argparse.Namespace, with_ui: bool) -> None:
    import uvicorn

    from .server import create_app, first_admin_password, load_ui

    ui = load_ui(runtime, runtime.config.flows_dir, runtime.engine) if with_ui else None
    if with_ui and ui is None:
        log.warning("the web UI (flowyard_ui) is not installed: serving /metrics and /hooks")
    if ui is not None and not args.text_logs:
        configure_logging(args)  # the UI app may have set up logging of its own
    app = create_app(runtime, ui)
    # httptools (C) parses HTTP where installed; h11 (pure Python) otherwise
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None,
                            access_log=False, lifespan="on", http=parser)
    log.info("HTTP parser: %s", parser)
    server = QuietServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    if args.log_file:
        print(f"flowyard: logs go to {args.log_file}", file=sys.stderr)
    print(f"flowyard: listening on http://{args.host}:{args.port}/", file=sys.stderr)
    password = first_admin_password(runtime.engine) if ui is not None else None
    announce = asyncio.create_task(announce_when_listening(server, args, password))
    try:
        await server.serve()
    finally:
        announce.cancel()


async def announce_when_listening(server: Any, args: argparse.Namespace, password: str | None) -> None:
    """On the very first start, the admin's one-time password, framed and after every
    start-up line, so it cannot be missed (it is shown this once, never logged)."""
    if not password:
        return
    while not server.started:
        await asyncio.sleep(0.05)
    url = f"http://{args.host}:{args.port}/"
    lines = [
        f"Flowyard is running at {url}",
        "",
        "First start: log in as 'admin' with the one-time password",
        f"    {password}",
        "You will be asked to choose your own password.",
    ]
    if args.log_file:
        lines += ["", f"Logs: {args.log_file}"]
    lines.append("Stop: Ctrl-C")
    width = max(len(line) for line in lines) + 2
    frame = "+" + "-" * width + "+"
    body = "\n".join(f"| {line.ljust(width - 2)} |" for line in lines)
    print(f"\n{frame}\n{body}\n{frame}\n", file=sys.stderr, flush=True)


def _quiet_server() -> Any:
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class Quiet(uvicorn.Server):
        """uvicorn, minus its signal capture: it would re-raise SIGTERM after serving,
        killing the process before the runtime has stopped gracefully."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Quiet


def QuietServer(config: Any) -> Any:
    return _quiet_server()(config)


# -- dead letters and replay --------------------------------------------------------


def since_value(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.time() - parse_duration(text).total_seconds()
    except (ValueError, TypeError) as exc:
        raise FlowyardError(f"--since: {exc}") from exc


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def dead_letters(args: argparse.Namespace) -> int:
    from ..store.api import Store

    store = Store()
    status = None if args.status == "all" else args.status
    if args.groups:
        groups = store.dead_letter_groups(status=status or "open", flow=args.flow)
        for g in groups:
            if args.json:
                print(json.dumps(asdict(g)))
            else:
                print(f"{g.count:6d}  {g.flow}  {g.reason_kind}\n        "
                      f"oldest {when(g.oldest)}, newest {when(g.newest)}; ids "
                      f"{' '.join(map(str, g.ids[:20]))}{' ...' if len(g.ids) > 20 else ''}")
        if not groups and not args.json:
            print("no dead letters")
        return 0
    rows = store.dead_letters(flow=args.flow, reason=args.reason, status=status,
                              since=since_value(args.since), limit=args.limit,
                              with_input=args.show or args.json)
    for d in rows:
        if args.json:
            print(json.dumps(asdict(d), default=str))
            continue
        where = f"step {d.step}" if d.step else f"target {d.target}" if d.target else d.kind
        print(f"{d.id:6d}  {when(d.created_at)}  {d.flow}@{d.flow_version}  {where}  "
              f"[{d.status}]  message {d.message_id}\n        {d.reason.splitlines()[0]}")
        if args.show:
            print("        input:\n" + indent(d.input_text))
            for t in d.trace:
                print(f"        - {t.get('step')}: {t.get('status')}")
    if not rows and not args.json:
        print("no dead letters")
    return 0


def indent(text: str, prefix: str = "          ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def replay(args: argparse.Namespace) -> int:
    from ..operations.replay import replay as replay_messages
    from ..store.api import Store

    store = Store()
    ids: list[str | int] = list(args.ids)
    if args.all:
        ids += [d.id for d in store.dead_letters(flow=args.flow, reason=args.reason,
                                                 status="open", limit=100_000)]
    if not ids:
        print("flowyard replay: give dead letter or message ids, or --all", file=sys.stderr)
        return 2
    who = args.who or getpass.getuser()
    results = replay_messages(store, ids, version=args.version, who=who, dry_run=args.dry_run, force=args.force)
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            print(f"{r.source_id}: not replayed: {r.error}")
            continue
        verb = "would run" if args.dry_run else f"replayed as {r.message_id}"
        print(f"{r.source_id}: {verb} on version {r.version}")
        if r.diff:
            print(redactor.redact(r.diff).rstrip())
    return 1 if failed else 0
