"""opcua connector against asyncua's own server, started by the test on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.server.user_managers import User, UserManager, UserRole
from connector_helpers import Collector, Running, context, free_port, wait_for
from pydantic import ValidationError

from flowyard_connectors.opcua import OpcUaSource, OpcUaSourceOptions

logging.getLogger("asyncua").setLevel(logging.ERROR)
NODE = "ns=2;s=Line1.Count"
TEMP = "ns=2;s=Line1.Temperature"


class Users(UserManager):
    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username == "mes" and password == "opc-pw-2":
            return User(role=UserRole.User)
        return None


class PlantServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.server: Server | None = None
        self.count: Any = None
        self.temperature: Any = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/flowyard/"

    async def start(self, count: int = 0) -> PlantServer:
        server = Server(user_manager=Users())
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_security_IDs(["Username"])
        idx = await server.register_namespace("urn:flowyard:test")
        line = await server.nodes.objects.add_object(idx, "Line1")
        self.count = await line.add_variable(
            ua.NodeId("Line1.Count", idx), "Count", ua.Variant(count, ua.VariantType.Int64)
        )
        self.temperature = await line.add_variable(ua.NodeId("Line1.Temperature", idx), "Temperature", 20.0)
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def set_count(self, value: int) -> None:
        await self.count.write_value(ua.Variant(value, ua.VariantType.Int64))


@pytest.fixture
async def plant() -> Any:
    server = await PlantServer().start()
    yield server
    await server.stop()


def source(plant: PlantServer, tmp_path: Path, password: str = "opc-pw-2", **extra: Any) -> OpcUaSource:
    values: dict[str, Any] = {"nodes": [{"node": NODE, "name": "count"}, TEMP], "interval": "100ms", **extra}
    options = OpcUaSourceOptions(endpoint=plant.endpoint, username="mes", password="${secret:OPC_PW}", **values)
    return OpcUaSource(options, context(tmp_path, OPC_PW=password))


def changes(store: Collector, name: str) -> list[Any]:
    found = []
    for m in store.messages:
        data = json.loads(m.payload)
        if data.get("name") == name:
            found.append(data["value"])
    return found


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_value_changes_become_messages(plant: PlantServer, tmp_path: Path, mode: str) -> None:
    store = Collector()
    async with Running(source(plant, tmp_path, mode=mode), store):
        await wait_for(lambda: changes(store, "count") == [0], what="the initial value")
        for value in (5, 6, 7):
            await plant.set_count(value)
            await wait_for(lambda v=value: changes(store, "count")[-1:] == [v], what=f"value {value}")
    assert changes(store, "count") == [0, 5, 6, 7]
    assert changes(store, TEMP) == [20.0]
    first = json.loads(store.messages[0].payload)
    assert first["status"] == "Good" and first["source_timestamp"]
    assert store.messages[0].content_type == "application/json"


async def test_aggregated_per_window(plant: PlantServer, tmp_path: Path) -> None:
    store = Collector()
    async with Running(source(plant, tmp_path, aggregate="interval", window="1s"), store):
        await wait_for(lambda: len(store.messages) >= 1, what="a first window")
        for value in (3, 9, 4):
            await plant.set_count(value)
            await wait_for(
                lambda v=value: any(
                    json.loads(m.payload)["nodes"].get("count", {}).get("last") == v for m in store.messages
                ),
                what=f"{value}",
            )
    windows = [json.loads(m.payload) for m in store.messages]
    counted = [w["nodes"]["count"] for w in windows if "count" in w["nodes"]]
    assert sum(c["count"] for c in counted) == 4  # 0 initially, then 3, 9, 4
    assert min(c["min"] for c in counted) == 0 and max(c["max"] for c in counted) == 9
    assert all("from" in w and "to" in w for w in windows)


async def test_server_restart_brings_the_latest_value(plant: PlantServer, tmp_path: Path) -> None:
    store = Collector()
    src = source(plant, tmp_path)
    async with Running(src, store) as running:
        await wait_for(lambda: changes(store, "count") == [0])
        await plant.stop()
        await wait_for(lambda: not src.health.connected, timeout=30, what="the source to notice")
        await plant.start(count=42)  # the count moved on while the server was away
        await wait_for(lambda: changes(store, "count")[-1:] == [42], timeout=40, what="the value after restart")
        await plant.set_count(43)
        await wait_for(lambda: changes(store, "count")[-1:] == [43])
        running.check()
    assert src.health.last_error is not None


async def test_bad_credentials_and_unknown_nodes_are_clear(plant: PlantServer, tmp_path: Path) -> None:
    src = source(plant, tmp_path, password="wrong-opc-pw")
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None, timeout=30)
    assert "refused the credentials of user 'mes'" in (src.health.last_error or "")
    assert "wrong-opc-pw" not in (src.health.last_error or "")
    missing = source(plant, tmp_path, nodes=["ns=2;s=Line9.Nope"])
    store = Collector()
    async with Running(missing, store):
        await wait_for(lambda: missing.health.last_error is not None, timeout=30)
    assert "ns=2;s=Line9.Nope" in (missing.health.last_error or "") and "is not on" in (missing.health.last_error or "")
    assert store.messages == []


def test_node_ids_are_checked_when_the_flow_loads() -> None:
    with pytest.raises(ValidationError, match="not a node id"):
        OpcUaSourceOptions(endpoint="opc.tcp://x:4840", nodes=["Line1 Count"])
