"""Prometheus metrics of the gateway, and the ASGI middleware every request passes: RED per
route, the access log line, and the request id."""

import logging
import time

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from .tracing import REQUEST_ID_HEADER, request_id_of

log = logging.getLogger("gateway.access")

HTTP_REQUESTS = Counter(
    "gateway_http_requests", "HTTP requests by route template and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "gateway_http_request_duration_seconds", "HTTP request handling time (SSE: the stream's lifetime)",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAM_CLIENTS = Gauge("gateway_event_stream_clients", "Connected live-event clients", ["transport"])
EVENTS_RECEIVED = Counter("gateway_events_received", "Valid events consumed from the broker", ["source"])
EVENTS_INVALID = Counter("gateway_events_invalid", "Consumed messages that are not valid events (dead-lettered)")
EVENTS_DUPLICATE = Counter("gateway_events_duplicate", "Redelivered events already in the event log")
EVENTS_SKIPPED = Counter("gateway_event_log_gaps", "Event log positions skipped after waiting for them")
# Not "gateway_notifications_created": in OpenMetrics that is the family's name, and `_created`
# is a suffix the format reserves (a counter's creation time).
NOTIFICATIONS_CREATED = Counter("gateway_event_notifications", "Notifications created from consumed events")
RPC_RESENT = Counter("gateway_rpc_resent", "RPC calls sent again after the broker connection was lost while "
                     "they waited (same correlation id and command id)", ["service", "method"])
RPC_DURATION = Histogram(
    "gateway_rpc_duration_seconds", "nameko RPC round trips by outcome (success, rejected, error, timeout, "
    "unavailable)", ["service", "method", "outcome"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

for transport in ("sse", "websocket"):
    STREAM_CLIENTS.labels(transport)

# The HTTP server passes on any token as a method: labelling series with it would let any
# client, unauthenticated, create series without bound.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def method_label(method: str) -> str:
    return method if method in STANDARD_METHODS else "other"


class RequestMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path, which
    holds ids) and standard method (any other is `other`), so that every label has a bounded
    set of values whatever clients send; writes the access log line without the query string
    (it may carry a token), and gives the response its X-Request-ID (on the request's span and
    log line too). Plain ASGI, so that streamed responses (SSE) pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = request_id_of(dict(scope.get("headers") or ()))
        trace.get_current_span().set_attribute("http.request_id", request_id)

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = method_label(scope["method"])
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(elapsed)
            log.info("%s %s %s %.1fms request_id=%s", method, route, status, elapsed * 1000, request_id)


# Login abuse (login_guard.py).
RATE_LIMITED = Counter("gateway_rate_limited", "Requests refused with 429 by the per-caller rate limit, by "
                       "whom it counts (user: an account; address: a client address)", ["kind"])
LOGIN_LOCKOUTS = Counter("gateway_login_lockouts", "Usernames or client addresses locked out after too many failed "
                         "logins", ["kind"])
LOGIN_REFUSED = Counter("gateway_login_refused", "Login attempts refused before the password was checked (locked: "
                        "a lockout; busy: every hashing turn taken)", ["reason"])
for _kind in ("username", "address"):
    LOGIN_LOCKOUTS.labels(_kind)
for _reason in ("locked", "busy"):
    LOGIN_REFUSED.labels(_reason)
