"""`Tracing`: a span around every worker, continuing the trace that brought it.

An RPC continues the caller's `traceparent` (nameko context data, sent as the AMQP header
`nameko.traceparent`); an event handler continues the event's (its CloudEvents extension).
The span is current while the worker runs, so the events it emits (store.UnitOfWork) and the
RPCs it makes (nameko passes context data on) carry it further."""

from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from opentelemetry.trace import SpanKind

from platform_contracts.problems import Rejected

from .. import tracing


class Tracing(DependencyProvider):
    def setup(self):
        tracing.configure(self.container.service_name)
        self._active = {}

    def stop(self):
        tracing.shutdown()  # what is buffered goes out before the process exits

    def worker_setup(self, worker_ctx):
        entrypoint, service = worker_ctx.entrypoint, self.container.service_name
        attributes = {"rpc.system": "nameko", "rpc.service": service, "rpc.method": entrypoint.method_name}
        if isinstance(entrypoint, EventHandler):
            event = worker_ctx.args[0] if worker_ctx.args else None
            parent, kind = getattr(event, "traceparent", None), SpanKind.CONSUMER
            attributes["messaging.message.id"] = getattr(event, "id", "") or ""
        elif isinstance(entrypoint, Rpc):
            parent, kind = worker_ctx.context_data.get(tracing.TRACEPARENT), SpanKind.SERVER
        else:  # a timer starts a trace of its own
            parent, kind = None, SpanKind.INTERNAL
        self._active[worker_ctx] = tracing.start(f"{service}.{entrypoint.method_name}", traceparent=parent,
                                                 kind=kind, attributes=attributes)
        if traceparent := tracing.current_traceparent():  # nameko warns of None in context data
            worker_ctx.context_data[tracing.TRACEPARENT] = traceparent

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        active = self._active.pop(worker_ctx, None)
        if active is not None:
            error = exc_info[1] if exc_info and not isinstance(exc_info[1], Rejected) else None
            tracing.finish(*active, error=error)

    def worker_teardown(self, worker_ctx):
        active = self._active.pop(worker_ctx, None)
        if active is not None:
            tracing.finish(*active)
