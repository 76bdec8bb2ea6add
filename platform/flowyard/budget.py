"""Budgets: how long a message may run in a flow's steps and how much memory it may take
on the way, and the watchdog that stops a step that goes over.

A flow declares `budget: {time: 30s, memory: 1GB}` (either may be left out: the runtime's
default then holds). The runtime runs a batch's steps on a thread of their own and tells
the `Watchdog` when each message begins and ends; the watchdog's thread looks ten times a
second and, for a message over its budget, raises `TimeBudgetExceeded` or
`MemoryBudgetExceeded` in the step's thread (`PyThreadState_SetAsyncExc`: Python code
stops at its next bytecode). The engine turns it into that step's failure, so the
message is a dead letter at once with "exceeded its time budget in step X".

What it cannot stop: a step stuck inside one C call that does not return to Python (one
huge regular expression match, one enormous allocation). The exception waits until the
call returns; after `STUCK_AFTER` more seconds the watchdog reports the message as stuck
(`Watch.on_stuck`), and the runtime dead-letters it and abandons the thread (a daemon
thread: it never holds up the process's exit). A C call that also holds the GIL (Python's
`re`) holds every thread, the watchdog's included, until it returns.

Memory is the growth of the process's resident set since the message began (read from
/proc/self/statm at each look, the start taken from the look before the message began;
nothing is traced per allocation, so it costs nothing while steps run).
When messages of several threads run at once, the growth is blamed on the one that has run
longest (a hungry step takes time to allocate; its neighbours take milliseconds), and
the others' starting points move up to the current size.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from .options import Duration, Options

log = logging.getLogger("flowyard.budget")

EVERY = 0.1  # seconds between two looks of the watchdog
STUCK_AFTER = 0.6  # seconds after the stop during which the step must give way

DEFAULT_TIME = 30.0  # seconds; below /healthz's stall_after (60 s)
DEFAULT_MEMORY = 1000 ** 3  # bytes (1GB)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
               "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_size(value: Any) -> int:
    """'256MB', '1GB', '512KiB' or a number of bytes."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = match.group(2).lower() if match.group(2) else None
            value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("a size must be more than 0")
        return value
    raise ValueError(f"{value!r} is not a size; write it like 256MB, 1GB or 512KiB (a number means bytes)")


def format_size(value: int) -> str:
    for unit, size in (("GB", 1000 ** 3), ("MB", 1000 ** 2), ("KB", 1000)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    if value >= 1000 ** 2:
        return f"{value / 1000 ** 2:.0f}MB"
    return f"{value}B"


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema({
        "type": ["string", "integer"],
        "pattern": r"^\d+(\.\d+)?\s*([KMGkmg][Ii]?[Bb]|[Bb])?$",
        "description": "a size such as 256MB, 1GB or 512KiB (a number means bytes)",
    }),
]


class Budget(Options):
    """What one message may spend in this flow's steps; over it, the step is stopped and
    the message becomes a dead letter at once."""

    time: Duration | None = Field(
        None, description="the longest a message may take in the steps, all of them together "
        "(default: the runtime's, 30s)")
    memory: Size | None = Field(
        None, description="the most the process may grow while a message runs in the steps "
        "(default: the runtime's, 1GB)")


class BudgetExceeded(BaseException):
    """Raised inside a step's thread by the watchdog. A BaseException, so that a step's own
    `except Exception` does not swallow it; the engine catches it by name."""

    kind: ClassVar[str] = "time"
    limit: ClassVar[str] = ""

    def reason(self, step: str | None) -> str:
        where = f" in step {step}" if step else ""
        limit = f" ({self.limit})" if self.limit else ""
        return f"exceeded its {self.kind} budget{where}{limit}; the step was stopped"


class TimeBudgetExceeded(BudgetExceeded):
    kind = "time"


class MemoryBudgetExceeded(BudgetExceeded):
    kind = "memory"


def spoken_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def spoken_size(size: int) -> str:
    return format_size(size)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The process's resident set size now (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Watch:
    """One message running on one thread, as the watchdog sees it."""

    __slots__ = ("fired", "fired_at", "key", "memory", "on_stuck", "rss_start", "started",
                 "step", "stuck", "thread", "time")

    def __init__(self, thread: int, key: str, time_limit: float, memory: int,
                 on_stuck: Callable[[Watch], None] | None) -> None:
        self.thread = thread
        self.key = key
        self.time = time_limit
        self.memory = memory
        self.on_stuck = on_stuck
        self.started = time.monotonic()
        self.rss_start = 0
        self.fired: type[BudgetExceeded] | None = None
        self.fired_at = 0.0
        self.step: str | None = None  # the step it was in when stopped
        self.stuck = False

    def reason(self) -> str:
        if self.fired is None:
            return ""
        return self.fired().reason(self.step)


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> int:
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None))


def step_of(thread: int) -> str | None:
    """The step a thread is in now: the name of the stage in the engine's innermost
    `_run_from` frame (read only when a budget is exceeded, never on the hot path)."""
    frame = sys._current_frames().get(thread)
    while frame is not None:
        if frame.f_code.co_name == "_run_from" and "stage" in frame.f_locals:
            stage = frame.f_locals["stage"]
            spec = getattr(stage, "spec", None)
            return getattr(spec, "name", None)
        frame = frame.f_back
    return None


class Watchdog:
    """Watches the messages that threads run and stops those over their budget."""

    def __init__(self, every: float = EVERY, stuck_after: float = STUCK_AFTER) -> None:
        self.every = every
        self.stuck_after = stuck_after
        self.watches: dict[int, Watch] = {}  # thread id -> the message it runs
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopped = 0  # messages stopped so far
        self.rss = resident_bytes()  # the process's size at the last look
        self.abandoned = 0  # threads left stuck in a C call

    # -- what the step threads say -------------------------------------------------
    def begin(self, key: str, time_limit: float, memory: int,
              on_stuck: Callable[[Watch], None] | None = None) -> Watch:
        watch = Watch(threading.get_ident(), key, time_limit, memory, on_stuck)
        # the size at the watchdog's last look (at most `every` old): reading /proc here
        # would cost ~15 us per message
        watch.rss_start = self.rss
        self.watches[watch.thread] = watch
        return watch

    def end(self, watch: Watch) -> None:
        """The message is done; a stop sent but not yet raised is withdrawn (so it cannot
        land in the next message). Safe to call twice."""
        with self.lock:
            if self.watches.get(watch.thread) is watch:
                del self.watches[watch.thread]
            if watch.fired is not None:
                _set_async_exc(watch.thread, None)

    # -- watching ------------------------------------------------------------------
    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="flowyard-budget", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    @property
    def running(self) -> list[Watch]:
        """The messages running now (for /healthz or a look from outside; read-only)."""
        return list(self.watches.values())

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.look(time.monotonic())
            except Exception:  # the watchdog must outlive anything
                log.exception("the budget watchdog failed to look at the running messages")

    def look(self, now: float) -> None:
        self.rss = rss = resident_bytes()
        watches = list(self.watches.values())
        if not watches:
            return
        over_memory = []
        for watch in watches:
            if watch.fired is not None:
                if not watch.stuck and now - watch.fired_at > self.stuck_after:
                    self.stuck(watch)
                continue
            if watch.time and now - watch.started > watch.time:
                self.fire(watch, TimeBudgetExceeded, spoken_seconds(watch.time), now)
            elif watch.memory and rss and rss - watch.rss_start > watch.memory:
                over_memory.append(watch)
        if over_memory:
            culprit = min(over_memory, key=lambda w: w.started)
            self.fire(culprit, MemoryBudgetExceeded, spoken_size(culprit.memory), now)
            for watch in watches:
                if watch is not culprit:
                    watch.rss_start = max(watch.rss_start, rss)

    def fire(self, watch: Watch, kind: type[BudgetExceeded], limit: str, now: float) -> None:
        with self.lock:
            if self.watches.get(watch.thread) is not watch:
                return  # it ended meanwhile
            watch.step = step_of(watch.thread)
            # a class of its own carries the limit into the message (only a class can be raised)
            watch.fired = type(kind.__name__, (kind,), {"limit": limit})
            watch.fired_at = now
            _set_async_exc(watch.thread, watch.fired)
            self.stopped += 1
        log.warning("message %s exceeded its %s budget (%s) in step %s; stopping the step",
                    watch.key, kind.kind, limit, watch.step or "?", extra={"message_id": watch.key})

    def stuck(self, watch: Watch) -> None:
        with self.lock:
            if self.watches.get(watch.thread) is not watch:
                return
            watch.stuck = True
            del self.watches[watch.thread]  # no longer watched: it is given up
            self.abandoned += 1
        log.error("message %s did not give way %.1f s after its %s budget was exceeded in step %s "
                  "(stuck in a call that cannot be interrupted); its thread is abandoned",
                  watch.key, self.stuck_after, watch.fired.kind if watch.fired else "?",
                  watch.step or "?", extra={"message_id": watch.key})
        if watch.on_stuck is not None:
            watch.on_stuck(watch)
