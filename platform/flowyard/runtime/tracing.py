"""OpenTelemetry traces, optional and off by default.

With FLOWYARD_OTEL=1 and the `opentelemetry-sdk` package installed, every message has
one trace whose trace id is the message id (a 128-bit hex id), so the spans of one
message line up in one trace even when accepting, processing and later delivery
retries happen in different processes: `accept`, `message` (the steps), one span per
step (with the step's measured duration) and one per delivery attempt, each carrying
the flow, message id and correlation id.

The exporter is the tracer provider already installed by the host application, if
any; otherwise OTLP over HTTP when `opentelemetry-exporter-otlp` is installed
(configured by the standard OTEL_* environment variables), else the console. Without
FLOWYARD_OTEL=1, `span()` costs one function call.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator
from typing import Any

_tracer: Any = None
_checked = False


def enabled() -> bool:
    return tracer() is not None


def reset() -> None:
    """Forget the tracer (tests switch tracing on and off)."""
    global _tracer, _checked
    _tracer, _checked = None, False


def tracer() -> Any:
    global _tracer, _checked
    if _checked:
        return _tracer
    _checked = True
    if os.environ.get("FLOWYARD_OTEL") != "1":
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        return None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter()
        except ImportError:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("flowyard.runtime")
    return _tracer


def trace_id(message_id: str) -> int:
    """The message id as a 128-bit trace id (hashed when it is not 32 hex digits)."""
    try:
        if len(message_id) == 32:
            value = int(message_id, 16)
            if value:
                return value
    except ValueError:
        pass
    return int(hashlib.sha256(message_id.encode()).hexdigest()[:32], 16) or 1


def message_context(message_id: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(trace_id=trace_id(message_id), span_id=random.getrandbits(64) or 1,
                         is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextlib.contextmanager
def span(name: str, message_id: str = "", **attributes: Any) -> Iterator[Any]:
    """A span in the message's trace (a no-op when tracing is off)."""
    t = tracer()
    if t is None:
        yield None
        return
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    context = None
    if message_id and (not current.is_valid or current.trace_id != trace_id(message_id)):
        context = message_context(message_id)
    attrs = {k: str(v) for k, v in attributes.items() if v is not None}
    if message_id:
        attrs["flowyard.message_id"] = message_id
    with t.start_as_current_span(name, context=context, attributes=attrs) as s:
        yield s


def step_span(name: str, message_id: str, seconds: float, **attributes: Any) -> None:
    """A finished step, recorded after the fact with its measured duration."""
    t = tracer()
    if t is None:
        return
    import time

    end = time.time_ns()
    start = end - int(seconds * 1e9)
    attrs = {k: str(v) for k, v in attributes.items() if v is not None}
    s = t.start_span(name, start_time=start, attributes=attrs)
    s.end(end_time=end)
