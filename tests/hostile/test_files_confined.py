"""Issue 17, items 6, 9 and 10 (files): every file a flow reads lies in the flow's folder
(a schema, a code table named with `..`, a file source's pattern), refused before it is
read so no error quotes it; undecodable file names and flow files are reported and
skipped; a target name with a NUL is a clear failed delivery; `.part` leftovers of a
kill -9 are cleaned when the file target starts; target failures are logged by class,
throttled. Against the real `flowyard` command and the real runtime."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RUNTIME_TESTS = str(Path(__file__).resolve().parents[1] / "runtime")
if RUNTIME_TESTS not in sys.path:  # --import-mode=importlib: the helpers' folder by hand
    sys.path.insert(0, RUNTIME_TESTS)

from rthelp import runtime_for, until  # noqa: E402

from flowyard.runtime.delivery import FailureLog, failure_class  # noqa: E402
from flowyard.runtime.runtime import RuntimeConfig  # noqa: E402
from flowyard.store.api import Store  # noqa: E402
from flowyard.store.database import make_engine  # noqa: E402
from flowyard.store.migrations import upgrade  # noqa: E402

FLOWYARD = str(Path(sys.executable).parent / "flowyard")
SECRET = "root-secret-line-7c1f"  # the content of a file outside the flow's folder

HEADER = "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {{name: {name}}}\n"


def flowyard(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWYARD, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          errors="backslashreplace")


def write_flow(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body, encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files outside the flows folder: a 'secret' JSON, YAML and CSV."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.json").write_text(f'{{"{SECRET}": 1}}', encoding="utf-8")
    (folder / "secret.yaml").write_text(f"{SECRET}\n", encoding="utf-8")
    (folder / "secret.csv").write_text(f"code,value\nX,{SECRET}\n", encoding="utf-8")
    return folder


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def runtime_config(flows: Path) -> RuntimeConfig:
    return RuntimeConfig(flows_dir=flows, rescan=0.2, idle_poll=0.05, breaker_threshold=1000)


# ------------------------------------------------------------- files a flow reads


@pytest.mark.parametrize("spec", ["ABSOLUTE/secret.json", "ABSOLUTE/secret.yaml", "../elsewhere/secret.json",
                                  "../../{up}/elsewhere/secret.yaml"])
def test_a_schema_outside_the_flow_folder_is_refused_unread(tmp_path: Path, outside: Path, spec: str) -> None:
    flows = tmp_path / "flows"
    spec = spec.replace("ABSOLUTE", str(outside)).replace("{up}", tmp_path.name)
    write_flow(flows, "peek", f"""source: {{file: {{path: inbox}}}}
steps:
  - json.parse: {{}}
  - validate: {{schema: "{spec}"}}
targets: [file: {{path: out}}]
""")
    result = flowyard("validate", str(flows / "peek.yaml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "schema" in result.stdout and "must stay inside the flow's folder" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert "internal error" not in result.stderr


def test_a_symlink_in_the_flow_folder_cannot_lead_a_schema_out(tmp_path: Path, outside: Path) -> None:
    flows = tmp_path / "flows"
    (flows / "schemas").mkdir(parents=True)
    (flows / "schemas" / "po.yaml").symlink_to(outside / "secret.yaml")
    write_flow(flows, "peek", """source: {file: {path: inbox}}
steps: [json.parse: {}, validate: {schema: schemas/po.yaml}]
targets: [file: {path: out}]
""")
    result = flowyard("validate", str(flows / "peek.yaml"))
    assert result.returncode == 1 and "must stay inside the flow's folder" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_schema_inside_the_flow_folder_still_validates(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    (flows / "schemas").mkdir(parents=True)
    (flows / "schemas" / "po.json").write_text('{"type": "object", "required": ["po"]}', encoding="utf-8")
    flow = write_flow(flows, "fine", """source: {file: {path: inbox}}
steps: [json.parse: {}, validate: {schema: schemas/po.json}]
targets: [file: {path: out}]
""")
    assert flowyard("validate", str(flow)).returncode == 0
    (tmp_path / "good.json").write_text('{"po": 1}')
    (tmp_path / "bad.json").write_text('{"x": 1}')
    assert flowyard("run", str(flow), "--input", str(tmp_path / "good.json"), "--dry-run").returncode == 0
    refused = flowyard("run", str(flow), "--input", str(tmp_path / "bad.json"), "--dry-run")
    assert refused.returncode != 0 and "internal error" not in refused.stderr


@pytest.mark.parametrize("name", ["../../elsewhere/secret", "/ABSOLUTE/secret", "..\\..\\elsewhere\\secret"])
def test_a_table_named_with_a_path_out_is_refused(tmp_path: Path, outside: Path, name: str) -> None:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    name = name.replace("/ABSOLUTE", str(outside))
    write_flow(flows, "peek", f"""source: {{file: {{path: inbox}}}}
steps:
  - json.parse: {{}}
  - lookup: {{table: '{name}', at: code, on_missing: keep}}
targets: [file: {{path: out}}]
""")
    result = flowyard("validate", str(flows / "peek.yaml"))
    assert result.returncode == 1, result.stdout
    assert "must be a name in tables/, not a path out of it" in result.stdout
    assert SECRET not in result.stdout + result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("step", ['jmespath: "{v: lookup(t, code)}"',
                                  """jinja: {template: '{"v": "{{ code | lookup(t) }}"}', content_type: application/json}"""])
def test_a_table_named_by_the_data_with_a_path_out_fails_that_message_as_bad_data(
        tmp_path: Path, outside: Path, step: str) -> None:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    (flows / "tables" / "t.csv").write_text("code,value\nX,fine\n", encoding="utf-8")
    flow = write_flow(flows, "named", f"""source: {{file: {{path: inbox}}}}
steps:
  - json.parse: {{}}
  - {step}
targets: [file: {{path: out}}]
""")
    (tmp_path / "in.json").write_text('{"t": "../../elsewhere/secret", "code": "X"}')
    result = flowyard("run", str(flow), "--input", str(tmp_path / "in.json"), "--dry-run")
    assert result.returncode == 1
    assert "must be a name in tables/, not a path out of it" in result.stdout + result.stderr
    assert "unexpected error" not in result.stdout + result.stderr and SECRET not in result.stdout + result.stderr
    (tmp_path / "in.json").write_text('{"t": "t", "code": "X"}')
    result = flowyard("run", str(flow), "--input", str(tmp_path / "in.json"), "--dry-run")
    assert result.returncode == 0 and "fine" in result.stdout


def test_a_table_found_by_name_in_a_parent_folder_still_works(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    (flows / "tables" / "uom.csv").write_text("code,value\nST,PCE\n", encoding="utf-8")
    flow = write_flow(flows / "plants", "uom", """source: {file: {path: inbox}}
steps: [json.parse: {}, lookup: {table: uom, at: unit}]
targets: [file: {path: out}]
""")
    assert flowyard("validate", str(flow)).returncode == 0
    (tmp_path / "in.json").write_text('{"unit": "ST"}')
    result = flowyard("run", str(flow), "--input", str(tmp_path / "in.json"), "--dry-run")
    assert result.returncode == 0 and "PCE" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("pattern", ["../other/*.txt", "../../*.txt", "/tmp/*.txt", "sub/../../other/*.txt"])
def test_a_source_pattern_out_of_its_path_is_refused(tmp_path: Path, pattern: str) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, "grab", f"""source: {{file: {{path: inbox, pattern: "{pattern}"}}}}
steps: [json.parse: {{}}]
targets: [file: {{path: out}}]
""")
    result = flowyard("validate", str(flows / "grab.yaml"))
    assert result.returncode == 1
    assert "must pick files inside `path`" in result.stdout, result.stdout + result.stderr


async def test_a_source_never_takes_or_moves_a_file_outside_its_path(tmp_path: Path, store: Store) -> None:
    """A symlinked folder inside `path` leading out: its files are neither taken nor
    archived; the files of `path` itself are."""
    flows = tmp_path / "flows"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.json").write_text('{"n": 0}')
    (flows / "inbox").mkdir(parents=True)
    (flows / "inbox" / "link").symlink_to(other, target_is_directory=True)
    write_flow(flows, "grab", """source: {file: {path: inbox, pattern: "**/*.json", recursive: true, poll: 50ms, settle: 0s}}
steps: [json.parse: {}]
targets: [file: {path: out}]
""")
    runtime = runtime_for(store, runtime_config(flows))
    await runtime.start()
    try:
        (flows / "inbox" / "mine.json").write_text('{"n": 1}')
        await until(lambda: store.count_messages(state="done") >= 1, timeout=60, what="the inbox file done")
        await asyncio.sleep(0.5)  # a few more polls
    finally:
        await runtime.stop()
    assert (other / "keep.json").exists()
    assert store.count_messages() == 1


# ------------------------------------------------------------- undecodable names and files


async def test_a_non_utf8_file_name_is_reported_and_skipped_and_the_flow_goes_on(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    flows = tmp_path / "flows"
    inbox = flows / "inbox"
    inbox.mkdir(parents=True)
    write_flow(flows, "names", """source: {file: {path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}}
steps: [json.parse: {}]
targets: [file: {path: out}]
""")
    bad = os.path.join(os.fsencode(inbox), b"caf\xe9.json")
    with open(bad, "wb") as f:
        f.write(b'{"n": 0}')
    runtime = runtime_for(store, runtime_config(flows))
    await runtime.start()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            for n in range(1, 4):
                (inbox / f"o{n}.json").write_text(f'{{"n": {n}}}')
            await until(lambda: store.count_messages(state="done") == 3, timeout=60, what="3 good files done")
            await asyncio.sleep(0.5)
    finally:
        await runtime.stop()
    assert time.monotonic() - started < 60
    assert os.path.exists(bad)  # left where it was
    assert store.count_messages() == 3
    reports = [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert len(reports) == 1 and "caf\\xe9.json" in reports[0] and "names" in reports[0]


def test_validate_reports_a_non_utf8_flow_file_and_checks_the_others(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    good = write_flow(flows, "good", """source: {file: {path: inbox}}
steps: [json.parse: {}]
targets: [file: {path: out}]
""")
    (flows / "latin1.yaml").write_bytes(
        b"apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: latin1, description: caf\xe9}\n"
        b"source: {file: {path: inbox}}\nsteps: [json.parse: {}]\ntargets: [file: {path: out}]\n")
    (flows / "tables").mkdir()
    (flows / "tables" / "codes.csv").write_bytes(b"code,value\n\xff,1\n")
    result = flowyard("validate", str(flows))
    assert result.returncode == 1
    assert "internal error" not in result.stderr
    assert f"{flows / 'latin1.yaml'}:3:" in result.stdout and "not UTF-8 text" in result.stdout
    assert f"{flows / 'tables' / 'codes.csv'}:2:1: not UTF-8 text" in result.stdout
    assert str(good) not in result.stdout  # checked, and fine
    assert "3 file(s) checked, 2 invalid" in result.stderr


@pytest.mark.parametrize("name", ["{{ 'a\\x00b' }}.json", "{{ data.n }}/", "{{ 'x' * 300 }}.json",
                                  "{{ 'sub/..' }}", "{{ '../' }}x.json"])
def test_a_target_name_the_file_system_cannot_take_is_a_clear_failed_delivery(tmp_path: Path, name: str) -> None:
    flows = tmp_path / "flows"
    flow = write_flow(flows, "names", f"""source: {{file: {{path: inbox}}}}
steps: [json.parse: {{}}]
targets:
  - file: {{path: out, name: "{name}"}}
""")
    (tmp_path / "in.json").write_text('{"n": 1}')
    result = flowyard("run", str(flow), "--input", str(tmp_path / "in.json"))
    assert result.returncode != 0
    assert "internal error" not in result.stderr, result.stderr
    assert "file name" in result.stdout + result.stderr, result.stdout + result.stderr
    assert not any((flows / "out").glob("*")) if (flows / "out").exists() else True


# ------------------------------------------------------------- operators are told


async def test_part_leftovers_of_a_killed_process_are_cleaned_when_the_target_starts(
        tmp_path: Path, store: Store) -> None:
    flows = tmp_path / "flows"
    out = flows / "out"
    (out / "2026").mkdir(parents=True)
    old = [out / ".names-k1.json.0a1b2c3d7.part", out / "2026" / ".x.json.deadbeef12.part"]
    fresh = out / ".names-k2.json.0a1b2c3d8.part"  # a write in flight elsewhere: kept
    foreign = out / ".notes.part"  # not of the target's naming scheme: kept
    for path in [*old, fresh, foreign]:
        path.write_bytes(b"half a payl")
    an_hour_ago = time.time() - 3600
    for path in [*old, foreign]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    write_flow(flows, "names", """source: {file: {path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}}
steps: [json.parse: {}]
targets: [file: {path: out}]
""")
    (flows / "inbox").mkdir()
    runtime = runtime_for(store, runtime_config(flows))
    await runtime.start()
    try:
        (flows / "inbox" / "o1.json").write_text('{"n": 1}')
        await until(lambda: store.count_messages(state="done") == 1, timeout=60, what="the message done")
        await until(lambda: not any(p.exists() for p in old), timeout=30, what="the leftovers removed")
    finally:
        await runtime.stop()
    assert fresh.exists() and foreign.exists()
    assert len(list(out.glob("names-*.json"))) == 1


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs, filled up (needs root: mount)."""
    folder = tmp_path / "flows" / "out"
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True, check=False) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(OSError), open(folder / ".filler", "wb", buffering=0) as f:
            while True:
                f.write(b"x" * 4096)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def locked_folder(tmp_path: Path) -> Iterator[str]:
    """A folder the target may not write into, and what the system says of it: a
    read-only folder for a user; for root (who may write into any folder) a read-only
    tmpfs mounted there."""
    folder = tmp_path / "flows" / "out"
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield "Permission denied"
        folder.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield "Read-only file system"
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize(("refusal", "kind"), [("full_disk", "disk full"), ("locked_folder", "permission refused")])
async def test_a_failing_target_is_logged_once_per_class_with_the_flow(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest,
        refusal: str, kind: str) -> None:
    says = request.getfixturevalue(refusal) if refusal == "locked_folder" else "No space left on device"
    if refusal == "full_disk":
        request.getfixturevalue(refusal)
    flows = tmp_path / "flows"
    (flows / "inbox").mkdir()
    write_flow(flows, "stuck", """source: {file: {path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}}
steps: [json.parse: {}]
targets:
  - file: {path: out}
    retry: {attempts: 50, backoff: 50ms, max_backoff: 100ms}
""")
    runtime = runtime_for(store, runtime_config(flows))
    await runtime.start()
    try:
        with caplog.at_level(logging.WARNING):
            for n in range(5):
                (flows / "inbox" / f"o{n}.json").write_text(f'{{"n": {n}}}')
            await until(lambda: store.count_messages() == 5, timeout=60, what="5 messages stored")
            await asyncio.sleep(1.5)  # many failed attempts
    finally:
        await runtime.stop()
    lines = [r.getMessage() for r in caplog.records if f"failed: {kind}" in r.getMessage()]
    assert len(lines) == 1, lines  # throttled: once a minute per flow, target and class
    assert "flow stuck" in lines[0] and says in lines[0]
    assert store.count_messages(state="done") == 0  # nothing lost either: still pending


def test_failure_classes_and_the_throttle() -> None:
    assert failure_class("cannot write /x: No space left on device") == "disk full"
    assert failure_class("cannot write /x: Permission denied") == "permission refused"
    assert failure_class("no answer from http://wms within 30s") == "timed out"
    assert failure_class("HTTP 400: bad order") is None
    failures = FailureLog(every=60)
    assert failures.failed("f", "t", "No space left on device", now=0)
    assert not failures.failed("f", "t", "No space left on device", now=30)
    assert failures.failed("f", "t", "Permission denied", now=30)  # another class
    assert failures.failed("g", "t", "No space left on device", now=30)  # another flow
    assert failures.failed("f", "t", "No space left on device", now=61)


def test_the_editors_check_shows_a_viewer_no_file_from_outside(tmp_path: Path, outside: Path) -> None:
    """What POST /flows/NAME/check renders for anyone who may view (the same function)."""
    from flowyard_ui.routes.editor import check

    flows = tmp_path / "flows"
    flows.mkdir()
    for spec in (str(outside / "secret.yaml"), "../elsewhere/secret.json"):
        text = HEADER.format(name="peek") + f"""source: {{file: {{path: inbox}}}}
steps:
  - json.parse: {{}}
  - validate: {{schema: "{spec}"}}
targets: [file: {{path: out}}]
"""
        messages = [str(issue) for issue in check(flows / "peek.yaml", text)["issues"]]
        assert any("must stay inside the flow's folder" in m for m in messages), messages
        assert not any(SECRET in m for m in messages)


@pytest.mark.parametrize("name", ["../../elsewhere/secret", "/etc/passwd", "guides/../../x"])
def test_an_x12_guide_is_a_name_not_a_path_out(tmp_path: Path, outside: Path, name: str) -> None:
    path = write_flow(tmp_path / "flows", "guided", "source:\n  file: {path: in}\n"
                      f"steps:\n  - x12.parse: {{guide: '{name}'}}\ntargets:\n  - file: {{path: out}}\n")
    result = flowyard("validate", str(path))
    assert result.returncode == 1
    assert f"guide {name!r} must be a name in guides/, not a path out of it" in result.stdout
    assert SECRET not in result.stdout + result.stderr
