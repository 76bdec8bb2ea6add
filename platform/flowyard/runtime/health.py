"""Is the runtime making progress? What `/healthz` answers, beyond being reachable.

A runtime can answer HTTP and still do nothing: every worker thread taken (the store
calls, accepts and commits wait for one), a commit hanging on the store, the event loop
held by a step. `Health` watches, twice a second and on a thread of its own:

- the event loop: a pulse task notes each turn; a watchdog thread that sees no turn
  for `stall_after` seconds logs it once, with where the loop is stuck (the frames of
  its thread), so the operator learns what holds it even before the process answers
  again. A probe that gets no answer in its timeout is the usual sign of this one;
- the worker threads: a no-op handed to the default executor, timed; one that has
  waited `stall_after` means every thread is busy;
- the work: a message or a delivery claimed here for `stall_after` seconds while no
  delivery attempt ended and no message went through its steps (the budget's watchdog
  says which message runs now: a long batch of slow messages that move is progress);
  accepted messages waiting `stall_after` seconds without a group commit.

`problems()` lists what is wrong now (empty: healthy). It costs a task turn and a
thread hand-off every half second.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")

PULSE = 0.5  # seconds between two looks


def _noop() -> None:
    return None


class Health:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stall_after = runtime.config.stall_after
        now = time.monotonic()
        self.pulse_at = now  # the last turn of the event loop seen
        self.probe_since: float | None = None  # a no-op waiting for a worker thread since
        self.progress_at = now  # the last delivery attempt that ended, or message that finished
        self.stored_at = now  # the last group commit of accepted messages
        self.waiting_since: float | None = None  # accepts waiting for their commit since
        self.claimed: dict[tuple[str, Any], float] = {}  # a message or delivery here -> since
        self.running: set[tuple[str, float]] = set()  # the messages in steps now (the budget's watchdog)
        self.loop_thread: int | None = None
        self.stopping = threading.Event()
        self.watchdog: threading.Thread | None = None

    # -- what the parts report ------------------------------------------------------
    def progressed(self) -> None:
        """A delivery attempt ended (the delivery part calls this), or a message finished
        its steps (processing may call it, so that a long batch of slow but moving
        messages is not taken for a stall)."""
        self.progress_at = time.monotonic()

    def stored(self, _batch: Any = None) -> None:
        self.stored_at = time.monotonic()

    # -- watching -------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        self.loop_thread = threading.get_ident()
        self.pulse_at = self.progress_at = self.stored_at = time.monotonic()
        self.runtime.intake.writer.on_commit.append(self.stored)
        self.watchdog = threading.Thread(target=self.watch_loop, name="flowyard-watchdog", daemon=True)
        self.watchdog.start()
        return asyncio.create_task(self.pulse_loop(), name="health")

    def stop(self) -> None:
        self.stopping.set()

    async def pulse_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.runtime.closing:
            now = time.monotonic()
            self.pulse_at = now
            if self.probe_since is None:
                self.probe_since = now
                loop.run_in_executor(None, _noop).add_done_callback(self._probe_done)
            self.look_at_work(now)
            await self.runtime.nap(PULSE)
        self.stop()

    def _probe_done(self, _future: Any) -> None:
        self.probe_since = None

    def look_at_work(self, now: float) -> None:
        working: set[tuple[str, Any]] = {("message", m) for m in self.runtime.working_messages}
        working |= {("delivery", d) for d in self.runtime.working_deliveries}
        self.claimed = {key: self.claimed.get(key, now) for key in working}
        watchdog = getattr(self.runtime, "watchdog", None)  # it knows each message in steps
        if watchdog is not None:
            running = {(w.key, w.started) for w in watchdog.running}
            if running != self.running:  # one finished its steps, or the next began
                self.running = running
                self.progressed()
        if self.runtime.intake.inflight_accepts:
            self.waiting_since = self.waiting_since or now
        else:
            self.waiting_since = None

    def watch_loop(self) -> None:
        """On its own thread: log a loop that stopped turning, once per stall."""
        reported = 0.0
        while not self.stopping.wait(PULSE):
            since = self.pulse_at
            held = time.monotonic() - since
            if held < self.stall_after or reported == since:
                continue
            reported = since
            log.error("the event loop has not turned for %.0f s (intake, processing, deliveries and "
                      "HTTP answers wait for it); it is busy in:\n%s", held, self.loop_stack())

    def loop_stack(self) -> str:
        frame = sys._current_frames().get(self.loop_thread or 0)
        if frame is None:
            return "  (unknown)"
        return "".join(traceback.format_stack(frame, limit=8))

    # -- the verdict ----------------------------------------------------------------
    def problems(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        limit = self.stall_after
        found = []
        held = now - self.pulse_at
        if held > limit:
            found.append(f"the event loop did not turn for {held:.0f} s")
        if self.probe_since is not None and now - self.probe_since > limit:
            found.append(f"every worker thread is busy: a no-op has waited {now - self.probe_since:.0f} s for one")
        if self.claimed and now - self.progress_at > limit:
            oldest = min(self.claimed.values())
            if now - oldest > limit:
                kinds = sorted({kind for kind, _ in self.claimed})
                found.append(f"{len(self.claimed)} claimed {' and '.join(k + 's' for k in kinds)} made no "
                             f"progress for {now - oldest:.0f} s (nothing ended meanwhile)")
        if self.waiting_since is not None and now - max(self.waiting_since, self.stored_at) > limit:
            found.append(f"accepted messages have waited {now - max(self.waiting_since, self.stored_at):.0f} s "
                         "to be stored")
        return found
