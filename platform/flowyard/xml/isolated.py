"""XSLT run in a worker process that is killed when a transform passes its time limit.

libxslt cannot be interrupted from outside: a stylesheet stuck in a quadratic dedupe
idiom or a deep recursion runs on in C, and a thread given up on keeps burning a core.
So `xml.xslt` sends each document to a worker process (one per transform running at
once, started on first use and kept), which parses it with the same hardened parser,
applies the stylesheet it compiled at start and answers with the result bytes or the
error. Past the deadline the worker gets SIGKILL: the work stops with it, and the next
message starts a fresh worker.

The worker reads requests on its stdin and answers on its stdout, each a pickled tuple
behind its length (both ends are this module). It ends when its stdin closes, so a
worker never outlives the process that started it, even after a kill -9. A process
forked from that one (which shares the pipes) starts workers of its own.

`python -m flowyard.xml.isolated` is the worker's entry point.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InputLocation, StepError

_LENGTH = struct.Struct("!Q")
START_TIMEOUT = 60.0  # a worker that has not compiled its stylesheet by then is given up on
KEEP_IDLE = 4  # idle workers kept per stylesheet (more only while that many run at once)


class WorkerGone(Exception):
    """The worker process ended or stopped answering (killed, crashed, out of memory)."""


def _write(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        if deadline is not None:
            while True:  # in slices: an exception sent to this thread (a budget's stop) gets in
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError
                if select.select([fd], [], [], min(wait, 0.1))[0]:
                    break
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WorkerGone("the worker ended")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read(fd: int, deadline: float | None) -> Any:
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))
    return pickle.loads(_read_exactly(fd, size, deadline))


@dataclass(frozen=True)
class Stylesheet:
    """What a worker compiles: the stylesheet file, the folder it may load from, the
    input limits and the parameters (plain values; the worker quotes strings)."""

    path: str
    folder: str
    limits: Any  # security.XmlLimits
    parameters: tuple[tuple[str, str | int | float | bool], ...]
    max_memory: int | None = None  # the worker's address space, in bytes


class Worker:
    def __init__(self, stylesheet: Stylesheet) -> None:
        self.pid_of_owner = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowyard.xml.isolated"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout = self.process.stdout.fileno()
        try:
            _write(self.stdin, stylesheet)
            answer = _read(self.stdout, time.monotonic() + START_TIMEOUT)
        except (OSError, TimeoutError, WorkerGone, EOFError, pickle.UnpicklingError) as exc:
            self.kill()
            raise StepError(f"the XSLT worker process did not start: {type(exc).__name__} {exc}") from None
        if answer[0] != "ready":
            self.kill()
            raise StepError(f"the XSLT worker process could not compile the stylesheet: {answer[1]}")

    def run(self, document: bytes, deadline: float) -> Any:
        try:
            _write(self.stdin, document)
            return _read(self.stdout, deadline)
        except (BrokenPipeError, EOFError, pickle.UnpicklingError) as exc:
            raise WorkerGone(str(exc)) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):  # what is still buffered for it has nowhere to go
            self.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def close(self) -> None:
        """Let the worker end by itself (it reads the end of its input)."""
        if os.getpid() != self.pid_of_owner:
            return  # a forked copy of the owner: the worker is not ours to end
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class IsolatedXslt:
    """The worker processes of one compiled stylesheet: `transform` takes one that is
    idle (or starts one), and kills it if the deadline passes."""

    def __init__(self, stylesheet: Stylesheet, time_limit: float) -> None:
        self.stylesheet = stylesheet
        self.time_limit = time_limit
        self.idle: list[Worker] = []
        self.lock = threading.Lock()

    def _take(self) -> Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.pid_of_owner == os.getpid() and worker.process.poll() is None:
                    return worker
        return Worker(self.stylesheet)

    def _give_back(self, worker: Worker) -> None:
        with self.lock:
            if len(self.idle) < KEEP_IDLE:
                self.idle.append(worker)
                return
        worker.close()

    def transform(self, document: bytes) -> bytes:
        """The result bytes, or a StepError: the worker's (bad input, a failed
        transform) or the time limit's."""
        worker = self._take()
        started = time.monotonic()
        try:
            answer = worker.run(document, started + self.time_limit)
        except TimeoutError:
            worker.kill()
            raise StepError(
                f"the stylesheet ran longer than its time limit of {self.time_limit:g}s (option time_limit) "
                "and was stopped"
            ) from None
        except WorkerGone:
            worker.kill()
            code = worker.process.returncode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            raise StepError(f"the XSLT worker process ended while transforming ({how}){self._memory_hint()}") from None
        except BaseException:  # stopped from outside (the message's budget, a shutdown): so is the transform
            worker.kill()
            raise
        if answer[0] == "ok":
            self._give_back(worker)
            result: bytes = answer[1]
            return result
        kind, message, where, details = answer
        if kind == "memory":  # a worker that ran out of memory is not trusted again
            worker.kill()
            raise StepError(f"the transform needed more memory than its limit{self._memory_hint(False)}")
        self._give_back(worker)
        raise StepError(message, where=InputLocation(*where) if where else None, details=details)

    def _memory_hint(self, question: bool = True) -> str:
        limit = self.stylesheet.max_memory
        if limit is None:
            return "; out of memory?" if question else ""
        shown = f"{limit / 1e9:g} GB" if limit >= 1e9 else f"{limit / 1e6:g} MB"
        return f"{'; out of memory? ' if question else ' '}(option max_memory: {shown})"

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


# -- the worker process ---------------------------------------------------------------


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Compile the stylesheet the first request names, then transform each document
    that follows, until the input ends."""
    from lxml import etree

    from .security import AccessRefused, log_lines, make_parser, parse_document, refusals, xslt_access_control

    fd = stdin.fileno()
    try:
        stylesheet: Stylesheet = _read(fd, None)
    except WorkerGone:
        return
    if stylesheet.max_memory is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (stylesheet.max_memory, stylesheet.max_memory))
    try:
        parser, resolver = make_parser(Path(stylesheet.folder))
        transform = etree.XSLT(etree.parse(stylesheet.path, parser), access_control=xslt_access_control())
    except Exception as exc:  # the parent compiled it already; a changed file, say
        _write(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        return
    parameters = {
        name: etree.XSLT.strparam(value)
        if isinstance(value, str)
        else (("true()" if value else "false()") if isinstance(value, bool) else str(value))
        for name, value in stylesheet.parameters
    }
    name = Path(stylesheet.path).name
    _write(stdout, ("ready",))
    while True:
        try:
            document: bytes = _read(fd, None)
        except WorkerGone:
            return
        try:
            tree = parse_document(document, stylesheet.limits)
            resolver.refused.clear()
            try:
                result = transform(tree, **parameters)
            except AccessRefused as exc:
                raise StepError(f"stylesheet {name}: {exc}") from exc
            except etree.XSLTApplyError as exc:
                details = log_lines(transform.error_log)
                if any("memory" in line.lower() for line in [str(exc), *details]) or _near(stylesheet.max_memory):
                    raise MemoryError from exc  # libxslt reports a failed allocation as whatever failed with it
                raise StepError(f"stylesheet {name} failed: {exc}{refusals(resolver)}", details=details) from exc
            answer: tuple[Any, ...] = ("ok", bytes(result))
        except StepError as exc:
            where = exc.where
            place = (where.line, where.column, where.path, where.segment) if where else None
            answer = ("error", exc.message, place, exc.details)
        except MemoryError:
            answer = ("memory", "", None, [])
        _write(stdout, answer)


def _near(limit: int | None) -> bool:
    """Has this process come within 10% of its address-space limit?"""
    if limit is None:
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024 >= limit * 0.9
    return False


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's to handle
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing else written to stdout can break the answers
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
