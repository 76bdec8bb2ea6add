"""`--deploy-from REF`: follow a git ref and deploy what it holds whenever it moves.

A reviewed merge to, say, `origin/main` is the deploy: the follower fetches, sees the
new commit and deploys its flows through the gate (`operations.gitops`). A commit the
gate refuses changes nothing that runs; the follower waits for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ..operations.gitops import GitError, deploy_commit, git, resolve
from ..store.api import Store

log = logging.getLogger("flowyard.gitops")


class GitFollower:
    def __init__(self, store: Store, flows_dir: Path, ref: str, every: float = 10.0) -> None:
        self.store = store
        self.flows_dir = flows_dir
        self.ref = ref
        self.every = every
        self.done: str | None = None  # the last commit looked at

    def fetch(self) -> None:
        """Bring remote refs up to date (a repository without remotes has nothing to fetch)."""
        if git(self.flows_dir, "remote").strip():
            git(self.flows_dir, "fetch", "--quiet")

    def step(self) -> None:
        try:
            self.fetch()
        except GitError as exc:
            log.warning("--deploy-from %s: fetch failed (using what is here): %s", self.ref, exc)
        commit = resolve(self.flows_dir, self.ref)
        if commit == self.done:
            return
        outcome = deploy_commit(self.store, self.flows_dir, self.ref)
        self.done = commit
        for info in outcome.deployed:
            log.info("deployed %s version %s from %s at %s", info.flow, info.version, self.ref, commit[:12],
                     extra={"flow": info.flow, "flow_version": info.version})
        for name, why in outcome.refused.items():
            log.error("not deployed %s from %s at %s (refused by the gate):\n%s", name, self.ref, commit[:12], why,
                      extra={"flow": name})

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(self.step)
            except Exception as exc:  # a broken ref or repository must not stop the runtime
                log.warning("--deploy-from %s: %s", self.ref, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every)
