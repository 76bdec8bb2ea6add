"""Runs a flow's steps over a message.

The engine is the hot path: steps were compiled when the flow loaded, so here a message
only passes through `process` calls. A split fans out depth-first, so output order is
input order. A step that fails stops that message (and only that message) with a
StepError naming the step; nothing a step raises escapes as a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .budget import BudgetExceeded
from .errors import InputLocation, StepError
from .expressions import truthy
from .flow import ConnectorSpec, Flow, StepSpec
from .message import Message, is_json_type
from .step import ROUTE_TO_TARGETS, Rejected

log = logging.getLogger("flowyard.engine")

Tracer = Callable[[StepSpec, Any, float], None]


@dataclass
class Failure:
    message: Message  # the message as it entered the failing step
    error: StepError


@dataclass
class RunResult:
    outputs: list[Message] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def decode_json_payload(message: Message) -> None:
    """A data step given bytes of a JSON content type decodes them."""
    if not is_json_type(message.content_type):
        raise StepError(
            f"this step takes data but the message is {message.content_type} bytes; "
            "add a parse step (json.parse, csv.parse, xml.parse, x12.parse) before it"
        )
    try:
        message.payload = json.loads(message.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        raise StepError(f"invalid JSON: {getattr(exc, 'msg', exc)}", where=InputLocation(line, col)) from exc
    message.content_type = "application/json"


def condition_input(message: Message) -> Any:
    """What a `when:` expression sees: the data, or for bytes the data before the last
    render (and the message metadata under `message`)."""
    if not message.is_bytes:
        return message.payload
    if message.last_data is not None:
        return message.last_data
    return {"message": message.metadata()}


class _Stopped(BaseException):
    """A step over the message's budget was stopped: unwinds every split at once."""


class _Stage:
    """One step as the hot loop needs it: what `StepSpec` and the step say, looked up
    once when the pipeline is built instead of on every message."""

    __slots__ = ("condition", "decode", "gives_bytes", "needs_bytes", "process", "spec")

    def __init__(self, spec: StepSpec) -> None:
        step = spec.step
        self.spec = spec
        self.process = step.process
        self.decode = step.takes == "data"  # a data step given bytes decodes JSON
        self.needs_bytes = step.takes == "bytes"
        self.gives_bytes = step.gives == "bytes"
        self.condition = spec.condition


class Pipeline:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.steps = flow.steps
        self._stages = [_Stage(spec) for spec in flow.steps]

    def run(self, message: Message, tracer: Tracer | None = None) -> RunResult:
        message.flow = message.flow or self.flow.name
        message.flow_version = message.flow_version or self.flow.version
        result = RunResult()
        with contextlib.suppress(_Stopped):  # over its budget: what it gave so far stays
            self._run_from(0, message, result, tracer)
        return result

    def _run_from(self, start: int, message: Message, result: RunResult, tracer: Tracer | None) -> None:
        # Runs once per message and per part of a split (hundreds of thousands for a big
        # streamed document): keep the per-step work to attribute reads and type checks.
        stages = self._stages
        for k in range(start, len(stages)):
            stage = stages[k]
            began = time.perf_counter() if tracer else 0.0
            try:
                is_bytes = isinstance(message.payload, bytes | bytearray)
                if is_bytes and stage.decode:
                    decode_json_payload(message)
                    is_bytes = False
                elif stage.needs_bytes and not is_bytes:
                    raise StepError(
                        "this step takes bytes but the message holds data; render it first"
                    )
                condition = stage.condition
                if condition is not None and not truthy(condition.search(condition_input(message))):
                    if tracer:
                        tracer(stage.spec, message, -1.0)
                    continue
                if stage.gives_bytes and not is_bytes:
                    message.last_data = message.payload
                out = stage.process(message)
                if tracer and out is not None and not isinstance(out, Message | list):
                    out = list(out)  # the trace shows every part; fine off the hot path
            except StepError as exc:
                exc.step, exc.step_index = stage.spec.name, k
                result.failures.append(Failure(message, exc))
                return
            except BudgetExceeded as exc:  # the watchdog stopped this step (flowyard.budget)
                error = StepError(exc.reason(stage.spec.name))
                error.step, error.step_index = stage.spec.name, k
                result.failures.append(Failure(message, error))
                raise _Stopped from None  # the whole message stops, not only this part of it
            except Exception as exc:  # a bug or an unexpected library error: keep the message
                log.exception("step %s failed unexpectedly", stage.spec.name)
                error = StepError(f"unexpected error: {type(exc).__name__}: {exc}")
                error.step, error.step_index = stage.spec.name, k
                result.failures.append(Failure(message, error))
                return
            if tracer:
                tracer(stage.spec, out, time.perf_counter() - began)
            if out is None:
                result.dropped += 1
                return
            if not isinstance(out, Message):
                self._fan_out(k, stage.spec, out, result, tracer, message)
                return
            message = out
        result.outputs.append(message)

    def _fan_out(self, i: int, spec: StepSpec, parts: Iterable[Message | Rejected], result: RunResult, tracer: Tracer | None, parent: Message | None = None) -> None:
        run_from, outputs, nxt = self._run_from, result.outputs, i + 1
        try:
            for part in parts:
                if isinstance(part, Rejected):
                    part.error.step, part.error.step_index = spec.name, i
                    result.failures.append(Failure(part.message, part.error))
                elif part.headers.get(ROUTE_TO_TARGETS):
                    outputs.append(part)
                else:
                    run_from(nxt, part, result, tracer)
        except (StepError, BudgetExceeded) as exc:  # a generator failing midway: what it gave so far goes on
            error = exc if isinstance(exc, StepError) else StepError(exc.reason(spec.name))
            error.step, error.step_index = spec.name, i
            # the input of the splitting step is the dead letter (a replay redoes the split)
            failed = parent if parent is not None else Message(payload=b"", flow=self.flow.name)
            result.failures.append(Failure(failed, error))
            if not isinstance(exc, StepError):
                raise _Stopped from None


def target_applies(target: ConnectorSpec, message: Message) -> bool:
    if target.condition is None:
        return True
    return truthy(target.condition.search(condition_input(message)))
