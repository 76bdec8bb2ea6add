"""The whole way, on real servers: the two example flows of examples/connectors run with
their hosts pointed at this machine.

Outbound: a purchase order row in PostgreSQL -> sql source -> X12 850 -> sftp target
(asyncssh's server). Inbound: an 856 in the supplier's SFTP outbox -> sftp source ->
x12.parse with a 997 -> canonical shipment -> the WMS over HTTP (uvicorn, OAuth2) and the
997 back to the supplier's SFTP inbox.
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa
from brokers import SftpServer
from connector_helpers import Running, Server, wait_for
from ruamel.yaml import YAML

from flowyard import registry
from flowyard.engine import Pipeline, target_applies
from flowyard.flow import Flow
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.secrets import Secrets
from flowyard.step import FlowContext
from flowyard.store import x12_control as control

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "connectors"


def rewrite(name: str, tmp_path: Path, change: Any) -> Path:
    """The example flow with `change(document)` applied, written beside the partner
    profile it uses (partners/supplierx.yaml)."""
    yaml = YAML()
    document = yaml.load((EXAMPLES / name).read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "flows" / name
    if not (path.parent / "partners").is_dir():
        shutil.copytree(EXAMPLES / "partners", path.parent / "partners")
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(document, handle)
    return path


class Runner:
    """What the runtime does, minus the store: source -> steps -> targets."""

    def __init__(self, path: Path, secrets: dict[str, str]) -> None:
        self.secrets = Secrets(environ=secrets)
        self.flow: Flow = load_flow(path, secrets=self.secrets)
        self.context = FlowContext(flow_file=path.resolve(), flow_name=self.flow.name, secrets=self.secrets)
        self.pipeline = Pipeline(self.flow)
        self.targets = []
        for spec in self.flow.targets:
            cls = registry.connector_class(spec.kind)
            assert cls.target_class is not None
            self.targets.append((spec, cls.target_class(spec.options, self.context)))
        self.failures: list[str] = []
        self.delivered: list[tuple[str, dict[str, Any]]] = []

    def source(self) -> Any:
        cls = registry.connector_class(self.flow.source.kind)
        assert cls.source_class is not None
        return cls.source_class(self.flow.source.options, self.context)

    async def accept(self, message: Message) -> None:
        result = self.pipeline.run(message)
        self.failures += [str(f.error) for f in result.failures]
        for out in result.outputs:
            for spec, target in self.targets:
                if target_applies(spec, out):
                    self.delivered.append((spec.name, await target.send(out, f"{out.id}-{spec.name}")))

    async def close(self) -> None:
        for _spec, target in self.targets:
            await target.close()


@pytest.fixture
async def supplier(tmp_path: Path) -> Any:
    root = tmp_path / "supplier"
    for folder in ("inbound/850", "inbound/997", "outbound"):
        (root / folder).mkdir(parents=True)
    server = await SftpServer(root, asyncssh.generate_private_key("ssh-ed25519")).start()
    yield server
    await server.stop()


def sftp_options(options: dict[str, Any], server: SftpServer) -> None:
    options["host"], options["port"] = "127.0.0.1", server.port
    options.pop("known_hosts", None)
    options["host_key"] = server.host_key_line


async def test_erp_purchase_order_goes_out_as_850_over_sftp(
    supplier: SftpServer, tmp_path: Path, require_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("postgresql")
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLOWYARD_DATABASE_URL", raising=False)
    table = f"fy_po_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    po = json.loads((ROOT / "examples/x12/erp/po-45001.json").read_text())
    with admin.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (po_number text, order_date text, ship_to jsonb, lines jsonb, "
                "supplier text, status text, changed_at timestamp)"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:p, :d, :s, :l, 'SUPPLIERX', 'RELEASED', now())"),
            {"p": po["po_number"], "d": po["order_date"], "s": json.dumps(po["ship_to"]), "l": json.dumps(po["lines"])},
        )

    def point_here(document: Any) -> None:
        source = document["source"]["sql"]
        source["url"] = "postgresql://postgres@127.0.0.1:5432/test"
        del source["password"]
        source["query"] = source["query"].replace("purchase_order_export", table)
        source["poll"] = "200ms"
        sftp_options(document["targets"][0]["sftp"], supplier)

    path = rewrite("erp-po-to-supplierx-850.yaml", tmp_path, point_here)
    runner = Runner(path, {"SUPPLIERX_SFTP_KEY": supplier.client_key.export_private_key().decode()})
    try:
        async with Running(runner.source(), runner.accept):  # type: ignore[arg-type]
            await wait_for(lambda: bool(runner.delivered or runner.failures), timeout=30, what="the 850")
    finally:
        await runner.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        admin.dispose()
    assert runner.failures == []
    [(name, detail)] = runner.delivered
    assert name.startswith("sftp")
    remote = supplier.root / detail["file"].lstrip("/")
    text = remote.read_text()
    assert remote.parent == supplier.root / "inbound" / "850" and remote.suffix == ".850"
    assert text.startswith("ISA*") and "BEG*00*SA*PO-45001**20261118" in text
    assert "PO1*1*40*EA*12.50*PE*BP*A-1001*VP*SX-778" in text
    # the partner profile expects a 997: the set waits for it in the store
    [waiting] = control_rows()
    assert (waiting.partner, waiting.receiver, waiting.transaction) == ("supplierx", "ZZ:SUPPLIERX", "850")
    assert f"*{waiting.interchange_control}*" in text and waiting.ack_status is None and waiting.deadline is not None


def control_rows() -> list[Any]:
    """The outbound X12 sets recorded in this test's store (FLOWYARD_DATA_DIR)."""
    with control.get_engine().connect() as connection:
        return list(connection.execute(sa.select(control.OutboundSet.__table__)))


class Wms:
    def __init__(self) -> None:
        self.receipts: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, answer = 404, {}
        if scope["path"] == "/oauth2/token":
            ok = (
                headers.get("authorization") == "Basic " + base64.b64encode(b"flowyard-mx01:wms-client-secret").decode()
            )
            status, answer = (200, {"access_token": "wms-token", "expires_in": 600}) if ok else (401, {})
        elif scope["path"].startswith("/api/receipts/") and headers.get("authorization") == "Bearer wms-token":
            self.receipts.append(
                {"path": scope["path"], "method": scope["method"], "headers": headers, "body": body.decode()}
            )
            status = 201
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


async def test_supplier_856_reaches_the_wms_and_the_997_goes_back(
    supplier: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLOWYARD_DATABASE_URL", raising=False)
    wms = Wms()
    server = await Server(wms).start()
    (supplier.root / "outbound" / "asn-77812.856").write_bytes(
        (ROOT / "examples/x12/856-supplierx-2cartons.edi").read_bytes()
    )

    def point_here(document: Any) -> None:
        source = document["source"]["sftp"]
        sftp_options(source, supplier)
        source["poll"], source["settle"] = "100ms", "200ms"
        http = document["targets"][0]["http"]
        http["url"] = http["url"].replace("https://wms.mx01.example", server.url)
        http["oauth2"]["token_url"] = server.url + "/oauth2/token"
        http["allow_networks"] = ["127.0.0.1/32"]
        sftp_options(document["targets"][1]["sftp"], supplier)

    path = rewrite("supplierx-856-to-wms.yaml", tmp_path, point_here)
    runner = Runner(
        path,
        {
            "SUPPLIERX_SFTP_KEY": supplier.client_key.export_private_key().decode(),
            "MX01_WMS_CLIENT_SECRET": "wms-client-secret",
        },
    )
    try:
        async with Running(runner.source(), runner.accept):  # type: ignore[arg-type]
            await wait_for(
                lambda: (supplier.root / "outbound" / "archive" / "asn-77812.856").exists(),
                timeout=30,
                what="the 856 to be taken and archived",
            )
    finally:
        await runner.close()
        await server.stop()
    assert runner.failures == []
    [receipt] = wms.receipts
    assert receipt["path"] == "/api/receipts/ASN-77812" and receipt["method"] == "PUT"
    shipment = json.loads(receipt["body"])
    assert shipment["plant"] == "MX01" and [i["quantity"] for i in shipment["items"]] == [40, 25]
    assert receipt["headers"]["idempotency-key"]
    [ack] = list((supplier.root / "inbound" / "997").iterdir())
    text = ack.read_text()
    assert "ST*997*" in text and "AK1*SH*101" in text and "AK9*A*1*1*1" in text
