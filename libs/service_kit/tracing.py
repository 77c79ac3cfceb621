"""Tracing across services with OpenTelemetry and W3C trace context.

A trace starts at the gateway's HTTP request (or continues the caller's `traceparent`), goes
over nameko RPC as context data (`nameko.traceparent`), is stored with every outbox record as
the CloudEvents distributed-tracing extension (`traceparent`), and is continued by whoever
consumes the event. Spans are always made, so every event carries its trace; they are
exported only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) names
an OTLP/HTTP collector, with the other standard OTEL_* variables (service name, batching).
No nameko here: the gateway uses it too."""

import contextlib
import logging
import os

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def configure(service_name: str) -> TracerProvider:
    """Install this process's tracer provider (once); export only when an endpoint is set."""
    global _provider
    if _provider is not None:
        return _provider
    _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME",
                                                                                       service_name)}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces over OTLP/HTTP")
    trace.set_tracer_provider(_provider)
    return _provider


def shutdown() -> None:
    """Export what is still buffered (at a clean stop)."""
    if _provider is not None:
        _provider.shutdown()


def tracer(name: str = "partybuilding") -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the span now active, if there is one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_from(traceparent: str | None) -> context.Context | None:
    """The remote parent a traceparent stands for (None when absent or malformed: a new trace)."""
    if not traceparent:
        return None
    return _propagator.extract({TRACEPARENT: traceparent})


@contextlib.contextmanager
def span(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
         attributes: dict | None = None):
    """A span, current while the block runs: the child of `traceparent` when one is given,
    else of whatever span is current. An exception marks it failed and goes on."""
    with tracer().start_as_current_span(name, context=context_from(traceparent), kind=kind,
                                        attributes=attributes or {}, record_exception=True,
                                        set_status_on_exception=True) as current:
        yield current


def start(name: str, *, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL,
          attributes: dict | None = None) -> tuple[Span, object]:
    """A span made current until `finish` (for hooks that start and end in separate calls,
    such as a nameko dependency's worker_setup and worker_result)."""
    started = tracer().start_span(name, context=context_from(traceparent), kind=kind, attributes=attributes or {})
    token = context.attach(trace.set_span_in_context(started))
    return started, token


def finish(started: Span, token, error: BaseException | None = None) -> None:
    if error is not None:
        started.record_exception(error)
        started.set_status(Status(StatusCode.ERROR, type(error).__name__))
    started.end()
    context.detach(token)


def record(name: str, *, traceparent: str | None, start_ns: int, kind: SpanKind = SpanKind.INTERNAL,
           attributes: dict | None = None) -> None:
    """A span of work already done (from `start_ns`, time.time_ns(), to now), the child of
    `traceparent`: for work done for many traces at once, such as a batch of events."""
    tracer().start_span(name, context=context_from(traceparent), kind=kind, attributes=attributes or {},
                        start_time=start_ns).end()


def trace_id(started: Span) -> str:
    return format(started.get_span_context().trace_id, "032x")
