"""Where a trace starts, and the request id that goes with it.

FastAPI traces every request itself (its built-in OpenTelemetry support: a server span that
continues the caller's W3C `traceparent`, with spans for dependencies, the endpoint and
serialization) on the tracer provider service_kit.tracing installs; the RPCs a route makes
carry that span on (rpc.py) and the events they cause come back with it (the consumer records
their arrival in it). Here: every response carries an `X-Request-ID` (the caller's when it is
a sensible token, else a fresh one), which is also put on the request's span."""

import re
import uuid

from opentelemetry import trace

REQUEST_ID_HEADER = b"x-request-id"
_SENSIBLE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Request validation failures and exceptions can quote personal data: FastAPI does not log
# them to OpenTelemetry; its own metrics are off (Prometheus counts requests, metrics.py).
TELEMETRY = {"tracing": True, "operation_spans": True, "metrics": False, "logs": False}


def request_id_of(headers: dict[bytes, bytes]) -> str:
    given = headers.get(REQUEST_ID_HEADER, b"")
    return given.decode() if _SENSIBLE_REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Plain ASGI, so that streamed responses (SSE) pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(dict(scope.get("headers") or ()))
        trace.get_current_span().set_attribute("http.request_id", request_id)

        async def send_with_request_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_request_id)
