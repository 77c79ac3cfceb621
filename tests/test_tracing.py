"""One request, one trace across processes: a POST /units is traced from the gateway's request
through the organization service's command to the gateway consuming the events it caused, and
exported over OTLP/HTTP to a collector (a stand-in here) when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

import re
import uuid

import httpx
import pytest

from platform_testing import credit_code, rabbit_vhost, wait_for
from tests.harness import RunningPlatform
from tests.otlp_receiver import OtlpReceiver

SERVER, CONSUMER = 2, 5  # OTLP span kinds


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    receiver = OtlpReceiver()
    with rabbit_vhost() as amqp_uri:
        platform = RunningPlatform(tmp_path_factory.mktemp("traced"), amqp_uri, extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"})
        try:
            yield platform, receiver
        finally:
            platform.stop()
            receiver.close()


def test_one_post_is_one_trace_through_the_gateway_the_service_and_the_event_consumer(traced):
    platform, receiver = traced
    trace_id, parent_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with platform.client() as api:
        response = api.post("/units", headers={"traceparent": f"00-{trace_id}-{parent_span}-01",
                                               "X-Request-ID": "req-42"},
                            json={"credit_code": credit_code("370113"), "name": "顺丰速运长清网点",
                                  "type": "platform_company", "industry": "express", "division": "370113001"})
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == "req-42"

    def whole_trace():
        spans = receiver.trace(trace_id)
        names = {(s["service"], s["name"]) for s in spans}
        if {("gateway", "POST /api/v1/units"), ("organization", "organization.register_unit"),
                ("gateway", "gateway.consume unit.registered"), ("gateway", "gateway.consume coverage.changed")} <= names:
            return spans
        return None

    spans = wait_for(whole_trace, timeout=30, what="the request's spans from every process")
    by_id = {s["span_id"]: s for s in spans}

    def ancestors(span):
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            yield span

    request = next(s for s in spans if s["name"] == "POST /api/v1/units" and s["kind"] == SERVER)
    command = next(s for s in spans if s["name"] == "organization.register_unit")
    assert request["parent_span_id"] == parent_span, "the request continues the caller's trace"
    assert command["kind"] == SERVER and request in ancestors(command)
    for consumed in (s for s in spans if s["name"].startswith("gateway.consume")):
        # The event carried the command's span: its consumption hangs below the command.
        assert by_id[consumed["parent_span_id"]] is command and consumed["kind"] == CONSUMER


def test_a_request_without_trace_headers_starts_a_trace_and_gets_a_request_id(traced):
    platform, receiver = traced
    response = httpx.get(f"{platform.gateway_url}/api/v1/coverage",
                         headers={"Authorization": f"Bearer {platform.admin_token()}", "X-Request-ID": "bad id!"})
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), "a malformed id is replaced"
    wait_for(lambda: any(s["name"] == "organization.get_coverage" and s["parent_span_id"] for s in receiver.spans),
             timeout=30, what="the query's span below the gateway's")
