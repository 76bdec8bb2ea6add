"""What runs here: each deployed flow at its deployed version, compiled from its
snapshot, and the older versions messages still wait under.

A version that does not load on this worker leaves the flow's running version (if any)
running and is reported, with its reason, for this worker alone (`fy_flow_runs`); no
flow's trouble stops another's."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FlowyardError
from ..operations.snapshots import materialize
from ..secrets import redactor
from ..store.database import data_dir
from .flows import LoadedFlow, compile_flow
from .outcomes import brief

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")


class RunningFlows:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.current: dict[str, LoadedFlow] = {}  # running flows, by name
        self.versions: dict[tuple[str, str], LoadedFlow] = {}  # older versions still needed
        self.io_dirs: dict[str, Path] = {}  # where each running flow's connectors read and write
        self.failed: dict[str, tuple[str, str]] = {}  # flow -> (deployed version, why it does not load here)
        self.reported: list[tuple[str, str, str]] | None = None

    async def changes(self) -> tuple[dict[str, str], list[LoadedFlow], list[str]]:
        """What is deployed (flow -> version), the flows to start at a new version, and
        the flows to stop."""
        states = await asyncio.to_thread(self.runtime.store.flows)
        wanted = {s.flow: s.version for s in states if s.enabled and s.version}
        starts = []
        for name, version in wanted.items():
            running = self.current.get(name)
            if running is not None and running.version == version:
                self.failed.pop(name, None)
                continue
            if self.failed.get(name, ("", ""))[0] == version:
                continue  # reported already; tried again when the deployment changes
            try:
                starts.append(await asyncio.to_thread(self.load_deployed, name, version))
            except Exception as exc:  # any failure of one flow stays that flow's
                why = redactor.redact(brief(exc))
                self.failed[name] = (version, why)
                log.error("cannot run %s version %s here (the running version, if any, stays): %s",
                          name, version, why, extra={"flow": name, "flow_version": version})
                continue
            self.failed.pop(name, None)
        for name in list(self.failed):
            if name not in wanted:
                del self.failed[name]
        return wanted, starts, [name for name in self.current if name not in wanted]

    def activate(self, loaded: LoadedFlow) -> None:
        old = self.current.get(loaded.name)
        if old is not None:
            self.versions[(old.name, old.version)] = old  # messages of it may still wait
        self.current[loaded.name] = loaded
        self.versions.pop((loaded.name, loaded.version), None)
        log.info("deployed %s version %s", loaded.name, loaded.version,
                 extra={"flow": loaded.name, "flow_version": loaded.version})

    def deactivate(self, name: str, why: str) -> None:
        loaded = self.current.pop(name, None)
        if loaded is not None:
            self.versions[(loaded.name, loaded.version)] = loaded
            log.info("stopped %s (%s)", name, why, extra={"flow": name})

    def load_deployed(self, name: str, version: str) -> LoadedFlow:
        """Compile a deployed version from its snapshot (materialized once under the data
        directory); a deployment older than snapshots runs from its recorded file text."""
        snapshot = self.runtime.store.snapshot(name, version)
        if snapshot is None:
            found = self.runtime.store.version_text(name, version)
            if found is None:
                raise FlowyardError(f"version {version} of {name} was never deployed")
            text, path = found
            loaded = compile_flow(Path(path), text, version=version, secrets=self.runtime.secrets, services=self.runtime.services)
            self.io_dirs[name] = Path(path).parent
            return loaded
        folder = data_dir() / "deployments" / name / version
        flow_file = materialize(snapshot, folder)
        io_dir = Path(snapshot.path).parent
        loaded = compile_flow(flow_file, snapshot.text, version=version, io_dir=io_dir,
                              secrets=self.runtime.secrets, services=self.runtime.services)
        if loaded.name != name:
            raise FlowyardError(f"the snapshot of {name} {version} holds flow {loaded.name!r}")
        self.io_dirs[name] = io_dir
        return loaded

    def loaded(self, flow: str, version: str) -> LoadedFlow | None:
        current = self.current.get(flow)
        if current is not None and (current.version == version or not version):
            return current
        cached = self.versions.get((flow, version))
        if cached is not None:
            return cached
        try:
            loaded = self.load_deployed(flow, version)
        except Exception as exc:
            log.error("version %s of %s does not load: %s", version, flow, brief(exc))
            return None
        self.versions[(flow, version)] = loaded
        return loaded

    async def report(self, wanted: dict[str, str]) -> None:
        """Tell the store what this worker runs of each deployed flow, or why not (the UI
        shows that, not what was asked for); written when it changes."""
        runs = []
        for name in sorted(wanted):
            if name in self.failed:
                runs.append((name, self.failed[name][0], self.failed[name][1]))
            elif name in self.current:
                runs.append((name, self.current[name].version, ""))
        if runs == self.reported:
            return
        try:
            await asyncio.to_thread(self.runtime.store.report_runs, self.runtime.worker, runs)
            self.reported = runs
        except Exception as exc:
            log.warning("cannot report the running flows: %s", brief(exc))

    async def close(self) -> None:
        for loaded in [*self.current.values(), *self.versions.values()]:
            await loaded.close()
