"""Runtime throughput: durable Flowyard against no store, PostgreSQL with one and two
workers, and Node-RED 4 doing the same work. Prints figures; never passes or fails.

    .venv/bin/python bench/runtime.py [--messages 3000] [--concurrency 32] [--rounds 3]
        [--tmp /dev/shm] [--skip-sqlite] [--skip-postgresql] [--skip-node-red]

The flow: HTTP webhook -> json.parse -> jmespath -> jinja -> file target (one file per
message). One load generator (a minimal asyncio HTTP/1.1 client, `--concurrency` keep-alive
connections)
POSTs `--messages` JSON orders; a run's time is from the first request until every
output file exists.

(a) durable Flowyard on SQLite (`flowyard worker --port`, WAL, synchronous=FULL, every
    message stored before its 202, deliveries and traces recorded), and the same steps
    and file target in a plain loop with no store and no HTTP;
(b) PostgreSQL: the same HTTP run with one worker; then the processing rate of one and
    of two workers draining the same number of stored messages, and the ceiling this
    machine sets for their ratio (`machine_pair`);
(c) Node-RED 4 (installed from the npm registry into a cache folder on first use):
    http in -> change (JSONata) -> template (mustache) -> file -> http response 202.

PostgreSQL runs use a throw-away database on 127.0.0.1:5432 (skipped when down).
The compared sides run in interleaved rounds (the machine is shared: a ratio is only
meaningful between runs made at the same time); each round's ratio and the median are
printed, with the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FLOWYARD = str(Path(sys.executable).parent / "flowyard")
NODE_RED_DIR = Path(os.environ.get("FLOWYARD_BENCH_CACHE",
                                   Path.home() / ".cache" / "flowyard-bench")) / "node-red"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RUNS: list[Path] = []  # the runs' folders, removed when the benchmark ends


@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """A folder for one run, removed only at the end of the benchmark. On an ext4 without
    a journal (this machine's root file system) the inode allocator skips every inode
    freed in the last ~30 s (`recently_deleted`), so creating files just after thousands
    were deleted costs several times the kernel CPU (measured with perf: a third of a
    worker's CPU). Deleting a run's outputs before the next run charged that run for the
    previous one's clean-up, whichever side it was."""
    folder = Path(tempfile.mkdtemp(prefix="run-"))
    RUNS.append(folder)
    yield folder

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: bench-orders}
source:
  http: {allow_unauthenticated: true}
steps:
  - json.parse: {}
  - jmespath: "{id: id, qty: qty, item: item}"
  - jinja:
      template: '{"order": {{ id }}, "qty": {{ qty }}, "item": "{{ item }}"}'
      content_type: application/json
targets:
  - file: {path: OUT, name: "{{ data.id }}.json"}
"""


def payload(n: int) -> bytes:
    return json.dumps({"id": n, "qty": n % 9 + 1, "item": f"ITEM-{n % 97:03d}",
                       "note": "x" * 200}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout}s")
        time.sleep(0.02)


def count_files(folder: Path) -> int:
    try:
        return sum(1 for p in os.scandir(folder) if p.name.endswith(".json"))
    except FileNotFoundError:
        return 0


class Outputs:
    """Watches for the run's output files, `0.json` to `N-1.json` (every side names its
    files by the order id). Counting the folder on each poll listed thousands of names
    every 20 ms: 6 ms of CPU a poll at 6,000 files, a tenth of this 2-core machine taken
    from the side being measured, and more from the side that uses both cores. This
    looks only past the first name still missing, so a run costs about one `stat` per
    file; `done` then counts the folder once to be sure."""

    def __init__(self, folder: Path, messages: int) -> None:
        self.folder, self.messages, self.next = folder, messages, 0

    def written(self) -> bool:
        while self.next < self.messages and os.path.exists(f"{self.folder}/{self.next}.json"):
            self.next += 1
        return self.next >= self.messages

    def done(self) -> bool:
        return self.written() and count_files(self.folder) == self.messages


async def load(url: str, messages: int, concurrency: int) -> list[int]:
    """POST every message over `concurrency` keep-alive connections; returns the status
    codes. A minimal HTTP/1.1 client on asyncio streams: a general-purpose client costs
    more CPU per request than the servers being measured on this small machine."""
    parsed = httpx.URL(url)
    host, port, path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(messages):
        queue.put_nowait(n)

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                n = queue.get_nowait()
                body = payload(n)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                             "\r\n\r\n".encode() + body)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                statuses.append(int(lines[0].split()[1]))
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int((await reader.readline()).strip(), 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return statuses


def drive(url: str, out: Path, messages: int, concurrency: int) -> tuple[float, float]:
    """(seconds until every 202 came back, seconds until every file exists)."""
    began = time.perf_counter()
    statuses = asyncio.run(load(url, messages, concurrency))
    acked = time.perf_counter() - began
    bad = [s for s in statuses if s >= 300]
    if bad or len(statuses) != messages:
        raise RuntimeError(f"{len(bad)} refused, {messages - len(statuses)} unanswered")
    wait_until(Outputs(out, messages).done, 600, "all files written")
    return acked, time.perf_counter() - began


def report(name: str, messages: int, acked: float, total: float, cpu: float | None = None) -> float:
    """Prints the rate; with `cpu` (the server process's CPU seconds over the run), its CPU
    per message too: this machine's cores change speed from minute to minute, and the CPU
    a side spends on each message shows what the rate alone cannot tell apart."""
    rate = messages / total
    spent = f", CPU {1e6 * cpu / messages:4.0f} us/msg" if cpu is not None else ""
    print(f"  {name:<46} {rate:8.0f} msg/s   (202s in {acked:5.1f}s, files in {total:5.1f}s{spent})")
    return rate


# -- Flowyard -------------------------------------------------------------------------


def start_worker(work: Path, env: dict[str, str], port: int | None, name: str,
                 *extra: str) -> subprocess.Popen[bytes]:
    args = [FLOWYARD, "worker", "--deploy-new", "--flows", str(work / "flows"), "--trace", "all", *extra]
    if port:
        args += ["--port", str(port)]
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(args, env=env, stdout=log, stderr=log, cwd=work)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def prepare(work: Path) -> Path:
    out = work / "out"
    (work / "flows").mkdir(parents=True)
    (work / "flows" / "bench-orders.yaml").write_text(FLOW.replace("OUT", str(out)))
    return out


def flowyard_http(messages: int, concurrency: int, url: str | None, label: str,
                  trace: str = "all") -> float:
    with work_folder() as work:
        out = prepare(work)
        env = {**os.environ, "FLOWYARD_DATA_DIR": str(work / "data")}
        if url:
            env["FLOWYARD_DATABASE_URL"] = url
        else:
            env.pop("FLOWYARD_DATABASE_URL", None)
        port = free_port()
        proc = start_worker(work, env, port, "w", "--trace", trace)
        try:
            wait_until(lambda: _status(f"http://127.0.0.1:{port}/healthz") == 200, 120,
                       "worker up")
            hook = f"http://127.0.0.1:{port}/hooks/bench-orders"
            wait_until(lambda: _post(hook) == 202, 60, "webhook registered")
            wait_until(lambda: count_files(out) >= 1, 60, "warm-up message written")
            shutil.rmtree(out, ignore_errors=True)
            cpu = cpu_seconds([proc.pid])
            acked, total = drive(hook, out, messages, concurrency)
            cpu = cpu_seconds([proc.pid]) - cpu
        finally:
            stop(proc)
        return report(label, messages, acked, total, cpu)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _post(url: str) -> int:
    try:
        return httpx.post(url, content=payload(0), timeout=5,
                          headers={"content-type": "application/json"}).status_code
    except httpx.HTTPError:
        return 0


def no_store(messages: int) -> float:
    """The same steps and file target in a plain loop: no store, no HTTP."""
    with work_folder() as work:
        prepare(work)
        total = messages / steps_rate(work, messages)
    return report("same steps + file target, no store, no HTTP (batches of 200)", messages,
                  total, total)


def drain(url: str, messages: int, workers: int) -> tuple[float, float]:
    """Start `workers` processes, wait until they run, store `messages` at once (one
    transaction), and time from its commit until every output file exists; returns the
    rate and the cores the machine kept busy meanwhile (all processes). Neither the
    processes' start-up nor the benchmark's own insert is counted: the insert took 0.5-0.7 s
    in which no worker could see a message yet, the same for one worker and two, which
    measured the benchmark's insert as much as the workers."""
    from sqlalchemy import func, select, text

    from flowyard.loader import load_flow
    from flowyard.message import Message
    from flowyard.store.api import Store
    from flowyard.store.database import make_engine
    from flowyard.store.migrations import upgrade
    from flowyard.store.models import Worker

    with work_folder() as work:
        out = prepare(work)
        engine = make_engine(url)
        upgrade(engine)
        store = Store(engine)
        with engine.begin() as c:  # TRUNCATE: a DELETE leaves dead rows that slow each
            # later round's scans (the PostgreSQL CPU per message grew round after round)
            c.execute(text("TRUNCATE fy_traces, fy_attempts, fy_dead_letters, "
                           "fy_deliveries, fy_messages, fy_workers, fy_source_keys"))
        version = load_flow(work / "flows" / "bench-orders.yaml").version
        batch = [Message(payload=payload(n), content_type="application/json",
                         flow="bench-orders", flow_version=version) for n in range(messages)]
        env = {**os.environ, "FLOWYARD_DATA_DIR": str(work / "data"),
               "FLOWYARD_DATABASE_URL": url}
        procs = [start_worker(work, env, None, f"d{i}", "--no-sources")
                 for i in range(workers)]

        def running() -> bool:
            with engine.connect() as c:
                return int(c.execute(select(func.count()).select_from(Worker)).scalar() or 0) \
                    >= workers

        try:
            wait_until(running, 120, "workers started")
            time.sleep(1.0)
            database = url.rsplit("/", 1)[1]
            backends = pg_backends(database)
            store.accept_many(batch)
            cpu = cpu_seconds([p.pid for p in procs]), cpu_seconds(backends)
            machine = machine_seconds()
            began = time.perf_counter()
            wait_until(Outputs(out, messages).done, 600, "drained")
            total = time.perf_counter() - began
            worker_cpu = cpu_seconds([p.pid for p in procs]) - cpu[0]
            # connections opened meanwhile count whole (they started after `began`)
            pg_cpu = cpu_seconds(sorted(set(backends) | set(pg_backends(database)))) - cpu[1]
            busy, idle = (after - before for after, before in zip(machine_seconds(), machine, strict=True))
        finally:
            for p in procs:
                stop(p)
            engine.dispose()
    rate = report(f"PostgreSQL, {workers} worker(s), draining stored messages", messages,
                  total, total)
    print(f"  {'':<46} CPU per message: workers {1e6 * worker_cpu / messages:.0f} us, "
          f"their PostgreSQL backends {1e6 * pg_cpu / messages:.0f} us, "
          f"the rest of the machine {1e6 * (busy - worker_cpu - pg_cpu) / messages:.0f} us; "
          f"idle {100 * idle / (busy + idle):.0f}%")
    return rate, busy / total


def machine_seconds() -> tuple[float, float]:
    """The machine's busy and idle CPU seconds so far, all cores (Linux /proc/stat); time
    waiting for the disk counts as idle."""
    with open("/proc/stat", encoding="ascii") as handle:
        ticks = [int(v) for v in handle.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc); a process gone counts 0,
    so measure between two points where they all live."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_backends(database: str) -> list[int]:
    """The server processes serving this database (the workers' pooled connections)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        return [int(row[0]) for row in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]


def steps_rate(work: Path, messages: int) -> float:
    """The messages per second of the flow's steps and file target alone in this process
    (no store, no HTTP), in batches of 200 with their sends in flight together, as a
    worker runs them."""
    from flowyard.engine import Pipeline
    from flowyard.loader import load_flow
    from flowyard.message import Message
    from flowyard.runner import open_target

    flow = load_flow(work / "flows" / "bench-orders.yaml")
    pipeline = Pipeline(flow)
    target = open_target(flow, flow.targets[0])

    async def run() -> None:
        for start in range(0, messages, 200):
            sends = []
            for n in range(start, min(messages, start + 200)):
                message = Message(payload=payload(n), content_type="application/json")
                sends += [target.send(output, f"{message.id}.0")
                          for output in pipeline.run(message).outputs]
            await asyncio.gather(*sends)

    began = time.perf_counter()
    asyncio.run(run())
    rate = messages / (time.perf_counter() - began)
    assert count_files(work / "out") == messages
    return rate


def machine_pair(messages: int) -> float:
    """How much more of the workers' own work (the steps and the file target, without
    the store) two processes do at once than one, on this machine now: one process,
    then two at once, then one again (the cores' speed drifts within seconds here).
    Two workers cannot beat it; with the cores one worker already keeps busy (itself,
    its PostgreSQL backends, the kernel) it bounds the two-worker ratio:
    `min(2, pair) / busy cores of one worker`."""
    import multiprocessing

    with contextlib.ExitStack() as stack:
        folders = [stack.enter_context(work_folder()) for _ in range(4)]
        for folder in folders:
            prepare(folder)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pool.map(time.sleep, [0.1, 0.1])  # both processes started and importing done
            before = pool.apply(steps_rate, (folders[0], messages))
            together = sum(pool.starmap(steps_rate, [(folders[1], messages),
                                                     (folders[2], messages)]))
            after = pool.apply(steps_rate, (folders[3], messages))
    return 2 * together / (before + after)


# -- PostgreSQL -----------------------------------------------------------------------


def pg_database() -> str | None:
    try:
        import psycopg

        name = f"fy_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return name
    except Exception as exc:
        print(f"  PostgreSQL unavailable ({exc}); skipping (b)")
        return None


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- Node-RED -------------------------------------------------------------------------


def install_node_red() -> Path | None:
    binary = NODE_RED_DIR / "node_modules" / ".bin" / "node-red"
    if binary.exists():
        return binary
    if shutil.which("npm") is None:
        print("  npm is not installed; skipping Node-RED")
        return None
    NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
    print(f"  installing node-red@4 into {NODE_RED_DIR} (once) ...", flush=True)
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                           "node-red@4"], cwd=NODE_RED_DIR, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0 or not binary.exists():
        print(f"  npm install failed; skipping Node-RED:\n{done.stderr[-2000:]}")
        return None
    return binary


def node_red_flow(out: Path) -> list[dict[str, object]]:
    return [
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "in", "z": "tab", "x": 100, "y": 100, "type": "http in", "url": "/orders", "method": "post",
         "wires": [["change"]]},
        {"id": "change", "z": "tab", "x": 250, "y": 100, "type": "change", "wires": [["template"]], "rules": [
            {"t": "set", "p": "filename", "pt": "msg", "tot": "jsonata",
             "to": f'"{out}/" & $string(payload.id) & ".json"'},
            {"t": "set", "p": "payload", "pt": "msg", "tot": "jsonata",
             "to": "{\"id\": payload.id, \"qty\": payload.qty, \"item\": payload.item}"},
        ]},
        {"id": "template", "z": "tab", "x": 400, "y": 100, "type": "template", "field": "payload",
         "fieldType": "msg", "format": "handlebars", "syntax": "mustache", "output": "str",
         "template": '{"order": {{payload.id}}, "qty": {{payload.qty}}, '
                     '"item": "{{payload.item}}"}',
         "wires": [["file"]]},
        {"id": "file", "z": "tab", "x": 550, "y": 100, "type": "file", "filename": "filename",
         "filenameType": "msg", "appendNewline": False, "createDir": True,
         "overwriteFile": "true", "encoding": "utf8", "wires": [["resp"]]},
        {"id": "resp", "z": "tab", "x": 700, "y": 100, "type": "http response", "statusCode": "202",
         "wires": []},
    ]


def node_red(binary: Path, messages: int, concurrency: int) -> float | None:
    with work_folder() as work:
        out = work / "out"
        out.mkdir()
        (work / "flows.json").write_text(json.dumps(node_red_flow(out)))
        port = free_port()
        (work / "settings.js").write_text(
            "module.exports = {uiHost: '127.0.0.1', flowFile: 'flows.json', "
            "logging: {console: {level: 'warn'}}, httpNodeRoot: '/', "
            "editorTheme: {tours: false}, diagnostics: {enabled: false}, "
            "telemetry: {enabled: false}, externalModules: {autoInstall: false}};\n")
        log = open(work / "node-red.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([str(binary), "--userDir", str(work), "--port", str(port),
                                 "--settings", str(work / "settings.js")], cwd=work,
                                stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/orders"
            wait_until(lambda: _post(url) == 202, 120, "Node-RED up")
            shutil.rmtree(out)
            out.mkdir()
            cpu = cpu_seconds([proc.pid])
            acked, total = drive(url, out, messages, concurrency)
            cpu = cpu_seconds([proc.pid]) - cpu
        except RuntimeError as exc:
            print(f"  Node-RED run failed: {exc}\n{(work / 'node-red.log').read_text()[-1500:]}")
            return None
        finally:
            stop(proc)
        return report("Node-RED 4 (in memory, no store)", messages, acked, total, cpu)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the compared sides (ratios per round)")
    parser.add_argument("--tmp", default=None,
                        help="folder for the work files and outputs (e.g. /dev/shm to take "
                        "the disk's flushes out of the file target)")
    parser.add_argument("--skip-node-red", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if args.tmp:
        tempfile.tempdir = args.tmp
    n, c, rounds = args.messages, args.concurrency, args.rounds
    began = time.perf_counter()
    print(f"runtime benchmark: {n} messages, {c} concurrent requests, {rounds} rounds, "
          f"{os.cpu_count()} CPUs, load average {load_average()}")
    binary = None
    if not args.skip_node_red:
        binary = install_node_red()
    durable: list[float] = []
    red: list[float] = []
    if not args.skip_sqlite or binary is not None:
        print("(a) SQLite and (c) Node-RED, interleaved")
        for r in range(rounds):
            print(f" round {r + 1}")
            if not args.skip_sqlite:
                durable.append(flowyard_http(n, c, None, "Flowyard durable, SQLite (traces: all)"))
            if binary is not None:
                rate = node_red(binary, n, c)
                if rate:
                    red.append(rate)
        if not args.skip_sqlite:
            flowyard_http(n, c, None, "Flowyard durable, SQLite (traces: none)", trace="none")
            no_store(n)
    one: list[float] = []
    two: list[float] = []
    busy_one: list[float] = []  # cores the machine kept busy while one worker drained
    pair: list[float] = []  # the steps' own two-process ratio on this machine, each round
    if not args.skip_postgresql:
        print("(b) PostgreSQL")
        name = pg_database()
        if name:
            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
            try:
                flowyard_http(n, c, url, "Flowyard durable, PostgreSQL, 1 worker")
                for r in range(rounds):  # alternate which side goes first
                    print(f" round {r + 1}")
                    for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                        rate, cores = drain(url, 2 * n, workers)
                        (one if workers == 1 else two).append(rate)
                        if workers == 1:
                            busy_one.append(cores)
                    pair.append(machine_pair(2 * n))
                    print(f"  {'steps + file target alone: two processes / one':<46} "
                          f"{pair[-1]:8.2f}x")
            finally:
                drop_database(name)
    print("ratios (per round, then the median)")
    if red and durable:
        per = [d / r for d, r in zip(durable, red, strict=False)]
        print(f"  Flowyard durable SQLite / Node-RED 4: "
              f"{', '.join(f'{x:.2f}' for x in per)}; median {median(per):.2f}x "
              "(target >= 1.0x, goal 1.5x; issue 17: above 1.3x)")
    if one and two:
        per = [b / a for a, b in zip(one, two, strict=True)]
        print(f"  PostgreSQL two workers / one worker: "
              f"{', '.join(f'{x:.2f}' for x in per)}; median {median(per):.2f}x "
              "(target >= 1.5x)")
        # this machine's cores change speed within seconds, each on its own (the same CPU
        # loop took from 0.31 to 0.58 s of CPU time), faster than a round's pairing can
        # cancel: the median rate of each side is a second view of the same runs
        print(f"  PostgreSQL median rate, two workers / one worker: {median(two):.0f} / "
              f"{median(one):.0f} msg/s = {median(two) / median(one):.2f}x")
        ceiling = [min(2.0, p) / b for p, b in zip(pair, busy_one, strict=True)]
        print(f"  this machine's ceiling for that ratio: {', '.join(f'{x:.2f}' for x in ceiling)}; "
              f"median {median(ceiling):.2f}x (one worker kept a median "
              f"{median(busy_one):.2f} of {os.cpu_count()} cores busy; the steps and the file "
              f"target alone, in two processes at once, did a median {median(pair):.2f}x "
              "the work of one)")
    print(f"took {time.perf_counter() - began:.0f}s; load average now {load_average()}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for run in RUNS:
            shutil.rmtree(run, ignore_errors=True)
