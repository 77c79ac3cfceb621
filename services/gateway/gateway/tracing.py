"""Where a trace starts, and the request id that goes with it.

FastAPI traces every request itself (its built-in OpenTelemetry support: a server span that
continues the caller's W3C `traceparent`, with spans for dependencies, the endpoint and
serialization) on the tracer provider service_kit.tracing installs; the RPCs a route makes
carry that span on (rpc.py) and the events they cause come back with it (the consumer records
their arrival in it). Every response carries an `X-Request-ID` (the caller's when it is a
sensible token, else a fresh one), also put on the request's span and its access log line
(metrics.RequestMiddleware)."""

import re
import uuid

REQUEST_ID_HEADER = b"x-request-id"
_SENSIBLE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Request validation failures and exceptions can quote personal data: FastAPI does not log
# them to OpenTelemetry; its own metrics are off (Prometheus counts requests, metrics.py).
TELEMETRY = {"tracing": True, "operation_spans": True, "metrics": False, "logs": False}


def request_id_of(headers: dict[bytes, bytes]) -> str:
    given = headers.get(REQUEST_ID_HEADER, b"")
    return given.decode() if _SENSIBLE_REQUEST_ID.match(given) else uuid.uuid4().hex
