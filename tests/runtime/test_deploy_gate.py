"""Files are drafts; the runtime runs deployments. Every way to deploy goes through one
gate (the snapshot loads on its own, its tests pass), a refused deploy changes nothing
that runs, and a flow that cannot load never holds back another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rthelp import order, until, write_flow

from flowyard.operations import deployments
from flowyard.operations.deployments import DeployRefused
from flowyard.operations.gitops import deploy_commit
from flowyard.operations.snapshots import take
from flowyard.runtime.runtime import Runtime, RuntimeConfig
from flowyard.store.api import Store

FLOWYARD = str(Path(sys.executable).parent / "flowyard")

TESTED = """\
  - file: {{path: out}}
tests:
  - name: one order
    input: samples/in.json
    expect: samples/{expect}
"""


def flow_with_a_test(flows: Path, *, expect: str = "out.json", name: str = "orders") -> Path:
    """A flow with a test case (input and expected output under samples/)."""
    samples = flows / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    (samples / "in.json").write_bytes(order(3))
    (samples / "out.json").write_text('{"order": 3, "qty": 4}\n')
    (samples / "other.json").write_text('{"order": 99, "qty": 1}\n')
    return write_flow(flows, name=name, targets=TESTED.format(expect=expect))


def config(flows: Path) -> RuntimeConfig:
    return RuntimeConfig(flows_dir=flows, rescan=0.1, idle_poll=0.05, lease_ttl=10.0, grace=5.0)


def outputs(folder: Path) -> list[dict[str, int]]:
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda d: d["order"])


async def test_an_edited_file_changes_nothing_until_it_is_deployed(tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    path = flow_with_a_test(flows)
    deployments.deploy(sqlite_store, path, who="dee")
    runtime = Runtime(sqlite_store, config(flows))
    await runtime.start()
    try:
        path.write_text(path.read_text().replace('"qty": {{ qty }}', '"qty": {{ qty }}, "draft": 1'))
        (flows / "inbox" / "a.json").write_bytes(order(1))
        await until(lambda: len(outputs(flows / "out")) == 1, what="the first output")
        assert outputs(flows / "out") == [{"order": 1, "qty": 2}]  # the deployed mapping, not the draft
        with pytest.raises(DeployRefused, match="test 'one order' failed"):  # the draft fails its own test
            deployments.deploy(sqlite_store, path, who="ana")
        state = sqlite_store.flow_state("orders")
        assert state is not None and "one order" in state.refused
        (flows / "inbox" / "b.json").write_bytes(order(2))
        await until(lambda: len(outputs(flows / "out")) == 2, what="the second output")
        assert outputs(flows / "out")[1] == {"order": 2, "qty": 3}  # the refused draft changed nothing
        (flows / "samples" / "out.json").write_text('{"order": 3, "qty": 4, "draft": 1}\n')
        deployed = deployments.deploy(sqlite_store, path, who="dee", note="draft field")
        await until(lambda: runtime.current["orders"].version == deployed.version, what="the new version running")
        (flows / "inbox" / "c.json").write_bytes(order(5))
        await until(lambda: len(outputs(flows / "out")) == 3, what="the third output")
        assert outputs(flows / "out")[2] == {"order": 5, "qty": 6, "draft": 1}
        state = sqlite_store.flow_state("orders")
        assert state is not None and state.refused == ""  # a deploy that passes clears the refusal
    finally:
        await runtime.stop()


async def test_a_flow_that_cannot_load_holds_back_no_other_and_is_reported(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    deployments.deploy(sqlite_store, flows / "orders.yaml", who="dee")
    # a snapshot that does not load on this worker (recorded past the gate, as an older
    # release or another host's files could leave one)
    broken = (flows / "orders.yaml").read_text().replace("name: orders", "name: broken").replace(
        "jmespath:", "jmespth:")
    sqlite_store.record_deployment(flow="broken", version="b1", path=str(flows / "broken.yaml"), text=broken,
                                   files={"broken.yaml": broken.encode()}, flow_file="broken.yaml", dedupe=False)
    runtime = Runtime(sqlite_store, config(flows))
    await runtime.start()
    try:
        for n in range(5):
            (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
        await until(lambda: len(outputs(flows / "out")) == 5, what="the good flow's five outputs")
        runs = {r.flow: r for r in sqlite_store.flow_runs()}
        assert runs["orders"].error == "" and runs["orders"].worker == runtime.worker
        assert runs["broken"].version == "b1" and "unknown step 'jmespth'" in runs["broken"].error
        assert "broken" not in runtime.current
    finally:
        await runtime.stop()


def test_a_changed_table_is_deployed_with_every_flow_that_uses_it_or_not_at_all(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    table = flows / "tables" / "qty-codes.csv"
    table.write_text("code,value\n4,four\n")
    extra = ', "word": "{{ qty | lookup("qty-codes") }}"'
    flow_with_a_test(flows, expect="word.json")
    (flows / "samples" / "word.json").write_text('{"order": 3, "qty": 4, "word": "four"}\n')
    path = write_flow(flows, extra=extra, targets=TESTED.format(expect="word.json"))
    first = deployments.deploy(sqlite_store, path, who="dee")
    table.write_text("code,value\n4,vier\n")  # the test expects "four": refused
    with pytest.raises(DeployRefused, match="test 'one order' failed"):
        deployments.deploy_paths(sqlite_store, [table], who="ana")
    assert sqlite_store.flow_state("orders").version == first.version  # type: ignore[union-attr]
    table.write_text("code,value\n4,four\n5,five\n")
    [again] = deployments.deploy_paths(sqlite_store, [table], who="dee")
    assert again.flow == "orders" and again.version != first.version
    snapshot = sqlite_store.snapshot("orders", again.version)
    assert snapshot is not None and snapshot.files["tables/qty-codes.csv"] == table.read_bytes()


def test_rollback_runs_the_earlier_snapshot_byte_for_byte(tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    path = flow_with_a_test(flows)
    (flows / "tables").mkdir()
    (flows / "tables" / "units.csv").write_bytes(b"code,value\r\nEA,each\r\n")  # CRLF kept as is
    taken = take(path)
    first = deployments.deploy(sqlite_store, path, who="dee")
    (flows / "tables" / "units.csv").write_text("code,value\nEA,piece\n")
    second = deployments.deploy_paths(sqlite_store, [flows / "tables" / "units.csv"], who="dee")[0]
    assert second.version != first.version
    back = deployments.rollback(sqlite_store, "orders", who="ana")
    assert back.version == first.version and back.action == "rollback"
    restored = sqlite_store.snapshot("orders", back.version)
    assert restored is not None and restored.files == taken.files
    assert restored.files["tables/units.csv"] == b"code,value\r\nEA,each\r\n"
    assert "samples/in.json" not in restored.files  # test data is not part of what runs


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ana", "GIT_AUTHOR_EMAIL": "ana@example.com",
           "GIT_COMMITTER_NAME": "Ana", "GIT_COMMITTER_EMAIL": "ana@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_deploy_from_a_commit_deploys_what_it_holds_and_refuses_a_failing_one(
        tmp_path: Path, sqlite_store: Store) -> None:
    repo = tmp_path / "repo"
    flows = repo / "flows"
    path = flow_with_a_test(flows)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "orders")
    good = git(repo, "rev-parse", "HEAD")
    outcome = deploy_commit(sqlite_store, flows, "main")
    [info] = outcome.deployed
    assert info.flow == "orders" and info.git_commit == good
    assert Path(sqlite_store.snapshot("orders", info.version).path) == path.resolve()  # type: ignore[union-attr]
    assert deploy_commit(sqlite_store, flows, "main").unchanged == ["orders"]
    # a reviewed change whose test fails: refused, the deployed version keeps running
    path.write_text(path.read_text().replace('"qty": {{ qty }}', '"qty": {{ qty }}, "x": 1'))
    git(repo, "commit", "-q", "-am", "breaks the test")
    bad = git(repo, "rev-parse", "HEAD")
    path.write_text("not even YAML: [")  # the working tree is not what is deployed
    refused = deploy_commit(sqlite_store, flows, "main")
    assert refused.deployed == [] and "one order" in refused.refused["orders"]
    state = sqlite_store.flow_state("orders")
    assert state is not None and state.version == info.version and bad[:12] in state.refused
    [last] = sqlite_store.deployments("orders", limit=1)
    assert last.git_commit == good


def test_the_deploy_commands(tmp_path: Path, sqlite_url: str) -> None:
    flows = tmp_path / "flows"
    path = flow_with_a_test(flows)
    env = {**os.environ, "FLOWYARD_DATABASE_URL": sqlite_url}

    def flowyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FLOWYARD, *args], capture_output=True, text=True, env=env, timeout=120)

    done = flowyard("deploy", str(path), "--note", "first", "--who", "dee")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deployed orders version ")
    path.write_text(path.read_text().replace('"qty": {{ qty }}', '"qty": {{ qty }}, "x": 1'))
    refused = flowyard("deploy", str(path))
    assert refused.returncode == 1
    assert "refused: orders" in refused.stderr and "test 'one order' failed" in refused.stderr
    assert "nothing changed" in refused.stderr
    history = flowyard("deployments", "orders")
    assert history.returncode == 0 and "deploy" in history.stdout and "by dee  first" in history.stdout
    assert len(history.stdout.strip().splitlines()) == 1
    stopped = flowyard("undeploy", "orders")
    assert stopped.returncode == 0 and "undeployed orders" in stopped.stdout
    back = flowyard("rollback", "orders")
    assert back.returncode == 2 and "no earlier deployed version" in back.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = flowyard("deploy", str(empty))
    assert nothing.returncode == 2 and "no flow files in this folder" in nothing.stderr
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: caf\xe9}\n")
    undecodable = flowyard("deploy", str(latin))
    assert undecodable.returncode == 2 and "not UTF-8 text (byte" in undecodable.stderr
