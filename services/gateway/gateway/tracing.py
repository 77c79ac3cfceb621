"""Where a trace starts: every HTTP request is a span, continuing the caller's W3C
`traceparent` when it sends one, and carries a request id (`X-Request-ID`: the caller's when
it is a sensible token, else a fresh one) back in the response and on the span. The RPCs a
route makes carry the span on (rpc.py); the events they cause come back with it (the
consumer continues it). See service_kit.tracing."""

import re
import uuid

from opentelemetry.trace import SpanKind

from service_kit import tracing

REQUEST_ID_HEADER = b"x-request-id"
_SENSIBLE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(headers: dict[bytes, bytes]) -> str:
    given = headers.get(REQUEST_ID_HEADER, b"")
    return given.decode() if _SENSIBLE_REQUEST_ID.match(given) else uuid.uuid4().hex


class TracingMiddleware:
    """Plain ASGI, so that streamed responses (SSE) pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        request_id = request_id_of(headers)
        traceparent = headers.get(b"traceparent", b"").decode("latin-1") or None
        status = 500

        async def send_with_request_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        with tracing.span(scope["method"], traceparent=traceparent, kind=SpanKind.SERVER,
                          attributes={"http.request.method": scope["method"], "http.request_id": request_id}) as span:
            try:
                await self.app(scope, receive, send_with_request_id)
            finally:
                # The route template, not the raw path (which holds ids), names the span.
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{scope['method']} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
