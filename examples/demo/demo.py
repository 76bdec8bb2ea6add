"""The whole way, locally: what `bin/demo` runs.

ERP purchase orders from PostgreSQL -> X12 850 over SFTP to Supplier X; Supplier X's 856
over SFTP -> canonical shipment -> the MX01 WMS over HTTP; the 997s both ways reconciled
and a duplicate interchange refused. Everything runs on this machine:

- the ERP is a database in this machine's PostgreSQL (`flowyard_demo`, table
  `purchase_order_export`, made afresh each run; `--database-url` or
  FLOWYARD_DEMO_DATABASE_URL for another one);
- Supplier X's SFTP server (asyncssh) and the WMS (a small ASGI app under uvicorn) run in
  this process, on loopback, with keys and secrets generated into the demo folder;
- the flows are the three committed examples of `examples/connectors/`, rendered into
  the demo folder with the hosts, ports and keys of the local servers (the committed files
  stay the readable reference);
- the runtime and the UI are the real `flowyard serve --flows DEMO/flows`, with its
  SQLite store under the demo folder, as a child process;
- this process also plays Supplier X: it answers each 850 that lands in its inbox with a
  997 (except PO-45002's, which turns overdue after the demo's short deadline), drops the
  ship notice for PO-45001 into its outbox, and then the same interchange once more,
  which the runtime refuses as a duplicate.

`--check` runs until every expected thing happened (or `--timeout`), prints what did and
did not, and exits 0 only when all did; `tests/connectors/test_demo.py` runs it.
Otherwise the demo keeps running until Ctrl-C, and stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from ruamel.yaml import YAML
from servers import AsgiServer, SupplierSftp, WmsStub, free_port, key_pair
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "connectors"
FLOW_850, FLOW_856, FLOW_997 = "erp-po-to-supplierx-850.yaml", "supplierx-856-to-wms.yaml", "supplierx-997-in.yaml"
SAMPLE_856 = ROOT / "examples" / "x12" / "856-supplierx-2cartons.edi"
SAMPLE_PO = ROOT / "examples" / "x12" / "erp" / "po-45001.json"
MARKER = ".flowyard-demo"
TABLE = "purchase_order_export"
TABLE_COMMENT = "flowyard demo: made by examples/demo/demo.py, dropped and made again on each run"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/flowyard_demo"
DEMO_PO = "PO-45001"  # acknowledged, and the 856 ships it
METRICS_TOKEN = secrets.token_urlsafe(24)  # /metrics wants it (FLOWYARD_METRICS_TOKEN); made per run
FORGOTTEN_PO = "PO-45002"  # Supplier X never acknowledges it: overdue after the deadline
WMS_CLIENT_ID = "flowyard-mx01"  # the example flow's oauth2.client_id


# -- the demo folder ----------------------------------------------------------------------


@dataclass
class Layout:
    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def flows(self) -> Path:
        return self.root / "flows"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def sftp(self) -> Path:
        return self.root / "sftp"  # Supplier X's side: inbound/850, inbound/997, outbound, outbound/997

    @property
    def wms_record(self) -> Path:
        return self.root / "wms" / "receipts.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "serve.log"

    def reset(self) -> None:
        """Start from nothing: a demo folder of an earlier run is removed (only one the
        demo made: it holds the marker file); any other non-empty folder is refused."""
        if self.root.exists():
            if not (self.root / MARKER).is_file() and any(self.root.iterdir()):
                raise SystemExit(f"demo: {self.root} exists and is not a demo folder; choose another with --dir")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        (self.root / MARKER).write_text("made by examples/demo/demo.py; removed on the next run\n")
        for folder in ("inbound/850", "inbound/997", "outbound/997"):
            (self.sftp / folder).mkdir(parents=True)
        self.secrets.mkdir(mode=0o700)


def write_secret(layout: Layout, name: str, value: str) -> None:
    path = layout.secrets / name
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)


def atomic_write(path: Path, data: bytes) -> None:
    """Write under a dot name first: the SFTP source never takes a half-written file."""
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    temporary.rename(path)


# -- the ERP database -----------------------------------------------------------------------


def purchase_orders() -> list[dict[str, Any]]:
    """A few purchase orders: two released for Supplier X, a draft and one for another
    supplier (neither of those two goes out)."""
    base = json.loads(SAMPLE_PO.read_text(encoding="utf-8"))
    second = {**base, "po_number": FORGOTTEN_PO, "order_date": "2026-11-19", "lines": [
        {"line": 1, "item_id": "A-1003", "supplier_item_id": "SX-801", "quantity": 200, "uom": "EA",
         "price": 0.85, "description": "GASKET, NITRILE"}]}
    draft = {**base, "po_number": "PO-45005", "order_date": "2026-11-20"}
    other = {**base, "po_number": "PO-45006", "order_date": "2026-11-20"}
    return [
        {**base, "supplier": "SUPPLIERX", "status": "RELEASED"},
        {**second, "supplier": "SUPPLIERX", "status": "RELEASED"},
        {**draft, "supplier": "SUPPLIERX", "status": "DRAFT"},
        {**other, "supplier": "OTHERCO", "status": "RELEASED"},
    ]


def driver_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def prepare_erp(url: str) -> None:
    """Create the database when it is missing, and the demo's purchase order table in it."""
    target = driver_url(url)
    if target.get_backend_name() != "postgresql":
        raise SystemExit(f"demo: the ERP database must be PostgreSQL, not {target.get_backend_name()}")
    try:
        server = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                  {"d": target.database}).first()
            if exists is None:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
        server.dispose()
    except sa.exc.OperationalError as exc:
        raise SystemExit(f"demo: cannot reach PostgreSQL at {target.render_as_string(hide_password=True)}: "
                         f"{str(exc.orig).strip()}\n(start it with bin/services, or give --database-url)") from None
    except sa.exc.ProgrammingError:
        pass  # no right to list or create databases: use the named one as it is
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        found = conn.execute(sa.text("SELECT obj_description(to_regclass(:t), 'pg_class'), to_regclass(:t)"),
                             {"t": TABLE}).first()
        if found is not None and found[1] is not None and found[0] != TABLE_COMMENT:
            raise SystemExit(f"demo: {target.database} already has a table {TABLE} that the demo did not make; "
                             "give another database with --database-url")
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(
            f"CREATE TABLE {TABLE} (po_number text PRIMARY KEY, supplier text NOT NULL, status text NOT NULL, "
            "order_date text NOT NULL, ship_to jsonb NOT NULL, lines jsonb NOT NULL, "
            "changed_at timestamp NOT NULL DEFAULT now())"))
        conn.execute(sa.text(f"COMMENT ON TABLE {TABLE} IS '{TABLE_COMMENT}'"))
        for offset, po in enumerate(purchase_orders()):
            conn.execute(
                sa.text(f"INSERT INTO {TABLE} (po_number, supplier, status, order_date, ship_to, lines, changed_at) "
                        "VALUES (:p, :s, :st, :d, CAST(:to AS jsonb), CAST(:l AS jsonb), "
                        "now() - make_interval(secs => :ago))"),
                {"p": po["po_number"], "s": po["supplier"], "st": po["status"], "d": po["order_date"],
                 "to": json.dumps(po["ship_to"]), "l": json.dumps(po["lines"]), "ago": 10 - offset},
            )
    engine.dispose()


# -- the flows, rendered for the local servers ------------------------------------------------


@dataclass
class Endpoints:
    sftp: SupplierSftp
    wms_url: str
    erp_url: str
    erp_password: bool


def _sftp_options(options: Any, where: Endpoints) -> None:
    """Point an sftp source or target at the local server (its key or known_hosts)."""
    position = list(options).index("host")
    options["host"] = "127.0.0.1"
    options.insert(position + 1, "port", where.sftp.port)
    if "host_key" in options:
        options["host_key"] = where.sftp.host_key_line
    # known_hosts: the flow's own file name, written beside the rendered flows


def _quick(options: Any) -> None:
    """Poll and settle in a second, not in a minute: it is a demo."""
    if "poll" in options or "path" in options:
        options["poll"] = "1s"
    if "settle" in options:
        options["settle"] = "1s"


def _retry(spec: Any) -> None:
    if "retry" in spec:
        spec["retry"]["backoff"], spec["retry"]["max_backoff"] = "1s", "10s"


def render(document: Any, where: Endpoints) -> None:
    source = document["source"]
    if "sftp" in source:
        _sftp_options(source["sftp"], where)
        _quick(source["sftp"])
    if "sql" in source:
        sql = source["sql"]
        url = make_url(where.erp_url).set(password=None)
        sql["url"] = url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
        if not where.erp_password:
            del sql["password"]  # trust authentication on loopback
        sql["poll"] = "1s"
    for spec in document["targets"]:
        _retry(spec)
        if "sftp" in spec:
            _sftp_options(spec["sftp"], where)
        if "http" in spec:
            http = spec["http"]
            http["url"] = http["url"].replace("https://wms.mx01.example", where.wms_url)
            if "oauth2" in http:
                http["oauth2"]["token_url"] = where.wms_url + "/oauth2/token"
            http["allow_networks"] = ["127.0.0.1/32"]  # the runtime refuses loopback otherwise
        if "file" in spec:
            path = str(spec["file"]["path"])
            if path.startswith("../../data/"):
                spec["file"]["path"] = "../" + path[len("../../data/"):]  # inside the demo folder


def render_flows(layout: Layout, where: Endpoints, deadline: str) -> list[Path]:
    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the examples' own layout
    written = []
    layout.flows.mkdir(parents=True, exist_ok=True)
    for name in (FLOW_850, FLOW_856, FLOW_997):
        document = yaml.load((EXAMPLES / name).read_text(encoding="utf-8"))
        render(document, where)
        written.append(_dump(yaml, document, layout.flows / name,
                             f"examples/connectors/{name}, pointed at the demo's local servers"))
    partner = yaml.load((EXAMPLES / "partners" / "supplierx.yaml").read_text(encoding="utf-8"))
    partner["acknowledgments"]["deadline"] = deadline
    (layout.flows / "partners").mkdir()
    _dump(yaml, partner, layout.flows / "partners" / "supplierx.yaml",
          f"examples/connectors/partners/supplierx.yaml, with a {deadline} acknowledgment deadline")
    (layout.flows / "known_hosts").write_text(where.sftp.known_hosts_line + "\n", encoding="utf-8")
    return written


def _dump(yaml: YAML, document: Any, path: Path, what: str) -> Path:
    text = StringIO()
    yaml.dump(document, text)
    header = f"# Written by bin/demo (examples/demo/demo.py) from {what}.\n# Edit the example, not this file: the demo writes it again on each run.\n"
    path.write_text(header + text.getvalue(), encoding="utf-8")
    return path


# -- Supplier X ---------------------------------------------------------------------------------


class Supplier:
    """Plays Supplier X on its own SFTP folders: answers each 850 in its inbox with a 997
    (all but FORGOTTEN_PO's), ships DEMO_PO with an 856, then sends that 856 interchange
    a second time, under another file name."""

    def __init__(self, root: Path, say: Callable[[str], None]) -> None:
        self.root = root
        self.say = say
        self.orders: dict[str, str] = {}  # 850 file name -> PO number
        self.numbers = itertools.count(7001)  # Supplier X's own control numbers for its 997s
        self.shipped = False
        self.resent = False

    def counter(self, kind: str) -> int:
        return next(self.numbers)

    async def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception as exc:
                self.say(f"supplier: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.3)

    def step(self) -> None:
        for path in sorted((self.root / "inbound" / "850").glob("*.850")):
            if path.name not in self.orders:
                self.received(path)
        if self.shipped and not self.resent and self.asn_acknowledged():
            atomic_write(self.root / "outbound" / "asn-77812-sent-again.856", SAMPLE_856.read_bytes())
            self.resent = True
            self.say("supplier: sent the same 856 interchange (ISA13 000000101) again as asn-77812-sent-again.856")

    def received(self, path: Path) -> None:
        from flowyard.x12.acks import acknowledgment
        from flowyard.x12.document import InterchangeResult, SetResult, walk
        from flowyard.x12.guides import default_guide

        data = path.read_bytes()
        po = "?"
        ack = None
        for event in walk(data, lambda t, v: default_guide(t, v), validate=True, shape=True):
            if isinstance(event, SetResult) and event.data:
                po = str((event.data.get("BEG") or {}).get("BEG03") or "?")
            elif isinstance(event, InterchangeResult):
                ack = acknowledgment(event, "997", ta1=False, counter=self.counter)
        self.orders[path.name] = po
        self.say(f"supplier: received {path.name} (850 for {po})")
        if po != FORGOTTEN_PO and ack:
            atomic_write(self.root / "outbound" / "997" / f"{path.stem}.997", ack.encode())
            self.say(f"supplier: acknowledged {po} with a 997 (outbound/997/{path.stem}.997)")
        elif po == FORGOTTEN_PO:
            self.say(f"supplier: does not acknowledge {po}: it turns overdue after the deadline")
        if po == DEMO_PO and not self.shipped:
            atomic_write(self.root / "outbound" / "asn-77812.856", SAMPLE_856.read_bytes())
            self.shipped = True
            self.say(f"supplier: shipped {po}: ship notice outbound/asn-77812.856 (856, ISA13 000000101)")

    def asn_acknowledged(self) -> bool:
        """The first 856 was taken and its 997 came back: time to send it again."""
        return any("AK1*SH*101" in p.read_text(errors="replace")
                   for p in (self.root / "inbound" / "997").glob("997-*.edi"))


# -- what must have happened -----------------------------------------------------------------------


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Observer:
    """Reads the outcome from the demo's store (the store API and its X12 tables), the
    supplier's folders, the WMS record and the runtime's /metrics."""

    layout: Layout
    wms: WmsStub
    ui_url: str
    store: Any
    errors: list[str] = field(default_factory=list)

    def outbound(self) -> dict[str, Any]:
        """Outbound sets by PO number (the interchange control number names the 850 file),
        each with `late`: not acknowledged and past its deadline (what the product calls
        overdue; /metrics is checked for its own count too)."""
        engine = self.store.engine
        table = sa.Table("x12_outbound_set", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            rows = list(conn.execute(sa.select(table)))
        now = datetime.now(UTC)
        by_po: dict[str, Any] = {}
        for row in rows:
            deadline = row.deadline
            if deadline is not None and deadline.tzinfo is None:
                deadline = deadline.replace(tzinfo=UTC)  # SQLite gives naive UTC back
            late = row.ack_status is None and deadline is not None and deadline < now
            file = self.layout.sftp / "inbound" / "850" / f"{row.interchange_control}.850"
            by_po[self.po_of(file) or f"? ISA13 {row.interchange_control}"] = (row, late)
        return by_po

    @staticmethod
    def po_of(path: Path) -> str | None:
        if not path.is_file():
            return None
        found = re.search(r"BEG\*00\*SA\*([^*~]+)", path.read_text(errors="replace"))
        return found.group(1) if found else None

    def checks(self) -> list[Check]:
        sftp = self.layout.sftp
        inbox = sorted(sftp.glob("inbound/850/*.850"))
        sent = {self.po_of(p): p for p in inbox}
        sets = self.outbound()
        receipts = self.wms.receipts()
        acks = {p.name: p.read_text(errors="replace") for p in sftp.glob("inbound/997/*.edi")}
        dead = self.store.dead_letters(status=None, limit=1000)
        duplicates = [d for d in dead if d.flow == "supplierx-856-to-wms" and "duplicate interchange" in d.reason]
        others = [d for d in dead if d not in duplicates]
        (demo_set, _), (forgotten_set, forgotten_late) = sets.get(DEMO_PO, (None, False)), sets.get(FORGOTTEN_PO, (None, False))
        first_ack = next((n for n, t in acks.items() if n.startswith("997-") and "AK1*SH*101" in t and "AK9*A*1*1*1" in t), None)
        ta1 = next((n for n, t in acks.items() if n.startswith("TA1-") and "TA1*000000101*" in t and "*R*025" in t), None)
        return [
            Check(f"the 850 for {DEMO_PO} reached Supplier X's SFTP inbox /inbound/850", DEMO_PO in sent,
                  str(sent.get(DEMO_PO, "").__str__().replace(str(self.layout.root) + "/", ""))),
            Check(f"the 850 for {FORGOTTEN_PO} too; the draft PO-45005 and OTHERCO's PO-45006 stayed home",
                  FORGOTTEN_PO in sent and not {"PO-45005", "PO-45006"} & set(sent), ", ".join(sorted(map(str, sent)))),
            Check(f"{DEMO_PO}'s 850 recorded as an outbound set for supplierx, then acknowledged by its 997 (A)",
                  demo_set is not None and demo_set.partner == "supplierx" and demo_set.ack_status == "A",
                  _set_text(demo_set)),
            Check(f"{FORGOTTEN_PO}'s 850 recorded, never acknowledged, overdue after the deadline",
                  forgotten_set is not None and forgotten_set.ack_status is None
                  and forgotten_late, _set_text(forgotten_set, forgotten_late)),
            Check("the 856 became a canonical shipment at the WMS (OAuth2 bearer, Idempotency-Key)",
                  any(r["shipment"].get("shipment_id") == "ASN-77812" and DEMO_PO in r["shipment"].get("po_numbers", [])
                      and r.get("idempotency_key") for r in receipts),
                  ", ".join(f"{r['method']} {r['path']}" for r in receipts)),
            Check("the 997 for the 856 went back to Supplier X's inbox /inbound/997", first_ack is not None,
                  first_ack or ""),
            Check("the same 856 interchange sent again was refused as a duplicate (dead letter)", bool(duplicates),
                  duplicates[0].reason.splitlines()[0] if duplicates else ""),
            Check("...and answered with a TA1 025 (duplicate interchange) in /inbound/997", ta1 is not None, ta1 or ""),
            Check("the WMS booked the shipment once", len(receipts) == 1, f"{len(receipts)} receipt(s)"),
            Check("no other dead letter, no internal error in the runtime's log", not others and not self.errors,
                  "; ".join([*(d.reason.splitlines()[0] for d in others), *self.errors][:3])),
            Check("/metrics counts the overdue set (flowyard_x12_overdue_acknowledgments)",
                  'flowyard_x12_overdue_acknowledgments{partner="supplierx"} 1.0' in self.metrics(), ""),
        ]

    def metrics(self) -> str:
        request = urllib.request.Request(self.ui_url + "metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""


def _set_text(row: Any, late: bool = False) -> str:
    if row is None:
        return "not recorded"
    state = f"ack {row.ack_status}" if row.ack_status else "overdue" if late else "waiting for its 997"
    return f"ISA13 {row.interchange_control}, GS06 {row.group_control}, ST02 {row.set_control}, {state}"


def open_store(layout: Layout) -> tuple[Any, str | None]:
    """The demo's store, with its schema made here (the runtime finds it up to date), and
    the first admin with a one-time password, made here so the demo can show it."""
    from flowyard.store.api import Store

    layout.store.mkdir(parents=True, exist_ok=True)
    os.environ.pop("FLOWYARD_DATABASE_URL", None)  # what the runtime is given (see Runtime.start)
    os.environ["FLOWYARD_DATA_DIR"] = str(layout.store)
    store = Store()  # the embedded SQLite store under FLOWYARD_DATA_DIR, as `flowyard serve` opens it
    try:
        from flowyard_ui.app import first_start
    except ImportError:  # no UI installed: the runtime serves /metrics alone
        return store, None
    return store, first_start(store.engine)


# -- the runtime --------------------------------------------------------------------------------


class Runtime:
    """`flowyard serve` as a child process; its output goes to the demo's log file."""

    def __init__(self, layout: Layout, host: str, port: int, errors: list[str], password: str | None) -> None:
        self.layout, self.host, self.port, self.errors = layout, host, port, errors
        self.password = password
        self.process: asyncio.subprocess.Process | None = None
        self.listening = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("flowyard")
        flowyard = [str(script)] if script.is_file() else [sys.executable, "-m", "flowyard.cli"]
        return [*flowyard, "serve", "--deploy-new", "--flows", str(self.layout.flows), "--host", self.host,
                "--port", str(self.port), "--no-samples"]

    async def start(self) -> None:
        env = dict(os.environ)
        env.pop("FLOWYARD_DATABASE_URL", None)  # the embedded SQLite store, under the demo folder
        env.update(FLOWYARD_DATA_DIR=str(self.layout.store), FLOWYARD_SECRETS_DIR=str(self.layout.secrets),
                   FLOWYARD_METRICS_TOKEN=METRICS_TOKEN)
        self.process = await asyncio.create_subprocess_exec(
            *self.command(), cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.reader = asyncio.create_task(self.read())
        waiting = asyncio.create_task(self.listening.wait())
        await asyncio.wait([waiting, self.reader], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self.listening.is_set():
            raise SystemExit(f"demo: flowyard serve did not start; see {self.layout.log}")

    async def read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.layout.log.open("a", encoding="utf-8") as log:
            async for raw in self.process.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                if "listening on http" in line:
                    self.listening.set()
                if _is_error(line):
                    self.errors.append(line.strip()[:300])

    async def stop(self) -> int | None:
        """SIGTERM (the runtime finishes or returns its in-flight work), SIGKILL after 30 s."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)
        return self.process.returncode


def _is_error(line: str) -> bool:
    """A log line the runtime wrote at ERROR or CRITICAL, or a traceback."""
    if line.startswith("Traceback"):
        return True
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return str(record.get("level", "")).upper() in ("ERROR", "CRITICAL")
    return False


# -- putting it together -------------------------------------------------------------------------


def frame(title: str, lines: list[str]) -> str:
    width = max(len(title) + 4, *(len(line) + 4 for line in lines))
    top = f"┌─ {title} " + "─" * (width - len(title) - 4) + "┐"
    body = [f"│ {line.ljust(width - 3)}│" for line in lines]
    return "\n".join([top, *body, "└" + "─" * (width - 1) + "┘"])


def relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


async def run(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.dir).resolve())

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    layout.reset()
    prepare_erp(args.database_url)
    say(f"demo: ERP purchase orders in {make_url(args.database_url).render_as_string(hide_password=True)}, table {TABLE}")

    host_key, client_key = key_pair(layout.keys / "sftp_host_ed25519"), key_pair(layout.keys / "client_ed25519")
    write_secret(layout, "SUPPLIERX_SFTP_KEY", client_key.export_private_key().decode())
    client_secret = os.urandom(12).hex()
    write_secret(layout, "MX01_WMS_CLIENT_SECRET", client_secret)
    erp_password = make_url(args.database_url).password
    if erp_password:
        write_secret(layout, "ERP_DB_PASSWORD", str(erp_password))

    sftp = await SupplierSftp(layout.sftp, host_key, client_key, args.sftp_port).start()
    wms = WmsStub(layout.wms_record, WMS_CLIENT_ID, client_secret)
    wms_server = await AsgiServer(wms, args.wms_port).start()
    render_flows(layout, Endpoints(sftp, wms_server.url, args.database_url, bool(erp_password)), args.ack_deadline)
    say(f"demo: Supplier X's SFTP server on 127.0.0.1:{sftp.port}, the WMS stub on {wms_server.url}")

    store, password = open_store(layout)
    errors: list[str] = []
    port = args.port or free_port()
    ui_url = f"http://{args.host}:{port}/"
    runtime = Runtime(layout, args.host, port, errors, password)
    supplier = Supplier(layout.sftp, say)
    playing: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        say(f"demo: starting flowyard serve --flows {relative(layout.flows)} (log: {relative(layout.log)})")
        await runtime.start()
        playing = asyncio.create_task(supplier.run())
        observer = Observer(layout, wms, ui_url, store, errors=errors)
        if args.check:
            code = await check(observer, args.timeout, stop, say)
        else:
            print(frame("Flowyard demo: the whole way, locally", summary(layout, args, ui_url, runtime, sftp, wms_server)),
                  flush=True)
            await stop.wait()
            say("demo: stopping (the runtime finishes or returns its in-flight work) ...")
    finally:
        if playing is not None:
            playing.cancel()
        returned = await runtime.stop()
        await wms_server.stop()
        await sftp.stop()
        say(f"demo: stopped (flowyard serve exited with {returned})")
    if args.check and returned not in (0, None):
        print(f"demo: flowyard serve exited with {returned}", file=sys.stderr)
        code = code or 1
    return code


async def check(observer: Observer, timeout: float, stop: asyncio.Event, say: Callable[[str], None]) -> int:
    """Until every check passes, for at most `timeout` seconds; print the result."""
    deadline = time.monotonic() + timeout
    results: list[Check] = []
    while not stop.is_set():
        results = observer.checks()
        if all(c.ok for c in results) or time.monotonic() > deadline:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    passed = all(c.ok for c in results) and bool(results)
    lines = [(f"{'ok ' if c.ok else 'NOT'} {c.what}" + (f": {c.detail}" if c.detail else ""))[:150] for c in results]
    print(frame("Flowyard demo: " + ("every expected thing happened" if passed else "something did not happen"),
                lines or ["interrupted before the first check"]), flush=True)
    print(json.dumps({"passed": passed, "checks": [c.__dict__ for c in results], "dir": str(observer.layout.root)}),
          flush=True)
    return 0 if passed else 1


def summary(layout: Layout, args: argparse.Namespace, ui_url: str, runtime: Runtime, sftp: SupplierSftp,
            wms: AsgiServer) -> list[str]:
    erp = make_url(args.database_url).render_as_string(hide_password=True).replace("postgresql+psycopg", "postgresql")
    login = f"log in as admin, one-time password {runtime.password}" if runtime.password else "log in as before"
    return [
        f"UI            {ui_url}   {login}",
        "  Runs          /runs          the 850s, the 997 and the 856s, with their deliveries",
        "  Dead letters  /dead-letters  the second 856: a duplicate interchange, refused (TA1 025)",
        f"  X12 acks      /x12/overdue   {FORGOTTEN_PO}'s 850 overdue after {args.ack_deadline}; {DEMO_PO}'s acknowledged",
        "  metrics       /metrics       flowyard_x12_overdue_acknowledgments",
        f"ERP           {erp}, table {TABLE}",
        f"Supplier X    sftp -P {sftp.port} -i {relative(layout.keys / 'client_ed25519')} "
        f"-o UserKnownHostsFile={relative(layout.flows / 'known_hosts')} mx01@127.0.0.1",
        f"              its files: {relative(layout.sftp)}/ (inbound/850, inbound/997, outbound, outbound/997)",
        f"WMS stub      {wms.url}/api/receipts   ({relative(layout.wms_record)})",
        f"flows         {relative(layout.flows)}/   (rendered from examples/connectors/)",
        f"runtime log   {relative(layout.log)}",
        f"one more PO   psql {erp} -c",
        f"              \"UPDATE {TABLE} SET status = 'RELEASED', changed_at = now() WHERE po_number = 'PO-45005'\"",
        "Ctrl-C stops everything.",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bin/demo",
        description="The whole way, locally: ERP purchase orders from PostgreSQL -> X12 850 over SFTP; the "
        "supplier's 856 over SFTP -> canonical shipment -> WMS over HTTP; 997s both ways, a duplicate refused. "
        "Runs a local SFTP server, a WMS stub and `flowyard serve` on the rendered example flows.")
    parser.add_argument("--dir", default=str(ROOT / "data" / "demo"),
                        help="the demo folder: keys, secrets, flows, store, SFTP files, WMS record, log "
                        "(made afresh on each run; default data/demo)")
    parser.add_argument("--database-url", default=os.environ.get("FLOWYARD_DEMO_DATABASE_URL", DEFAULT_DATABASE),
                        help="the ERP's PostgreSQL database; created when missing, and the demo (re)creates its "
                        f"table {TABLE} in it (default: $FLOWYARD_DEMO_DATABASE_URL or {DEFAULT_DATABASE})")
    parser.add_argument("--host", default="127.0.0.1", help="address of the UI (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port of the UI (default 8090; with --check a free port)")
    parser.add_argument("--sftp-port", type=int, default=0, help="port of the SFTP server (default: a free one)")
    parser.add_argument("--wms-port", type=int, default=0, help="port of the WMS stub (default: a free one)")
    parser.add_argument("--ack-deadline", default="20s",
                        help="how long an 850 waits for its 997 before it is overdue (default 20s)")
    parser.add_argument("--check", "--once", action="store_true",
                        help="run until the whole way is done, print the result and exit (0: all happened)")
    parser.add_argument("--timeout", type=float, default=90, help="with --check: give up after this many seconds")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    args = parser.parse_args(argv)
    if args.port is None and not args.check:
        args.port = 8090
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
