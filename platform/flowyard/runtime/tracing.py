"""OpenTelemetry traces, optional and off by default.

With FLOWYARD_OTEL=1 and the `opentelemetry-sdk` package installed, each message gets
one trace: a `message` span with a child span per step and per delivery attempt,
carrying the flow, message id and correlation id. The exporter is whatever the standard
OTEL_* environment variables configure (OTLP when `opentelemetry-exporter-otlp` is
installed, else the console). Without it, `span()` costs one attribute lookup.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_tracer: Any = None
_checked = False


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


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    t = tracer()
    if t is None:
        yield None
        return
    with t.start_as_current_span(name, attributes={k: str(v) for k, v in attributes.items()}) as s:
        yield s
