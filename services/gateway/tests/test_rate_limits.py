"""Every REST operation is rate-limited per caller (issue 12: "rate-limited where it can be
abused"; GET /industries was not): a signed-in user by account, anyone else by client
address, with 429, Retry-After and a problem document beyond the limit, and nothing done.
One caller's limit is not another's; the probes are never limited."""

import uuid

import pytest

from platform_testing import metric_value
from gateway_test_support import ADMIN_PASSWORD, start_gateway

pytestmark = pytest.mark.timeout(90)

PER_USER, PER_ADDRESS = 5, 3


@pytest.fixture(scope="module")
def limited(mongodb_uri, amqp_uri, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("limited"),
                       MONGODB_GATEWAY_DB=f"gateway_limits_{uuid.uuid4().hex[:8]}",
                       RATE_LIMIT_PER_USER=f"{PER_USER}/minute", RATE_LIMIT_PER_ADDRESS=f"{PER_ADDRESS}/minute")
    try:
        yield gw
    finally:
        gw.process.stop()


def test_a_user_beyond_the_limit_gets_429_with_retry_after_and_another_user_does_not(limited):
    # Signing in is an unauthenticated request: it counts against the address (3 a minute).
    admin_token = limited.token("admin", ADMIN_PASSWORD)
    with limited.client(admin_token) as admin:
        username = f"op-{uuid.uuid4().hex[:6]}"
        created = admin.post("/api/v1/users", json={"username": username, "password": "op-password-1234",
                                                    "role": "operator", "scope": "3701"})
        assert created.status_code == 201, created.text
        other_token = limited.token(username, "op-password-1234")
        statuses = [admin.get("/api/v1/me").status_code for _ in range(PER_USER)]
        assert statuses == [200] * (PER_USER - 1) + [429]  # the user creation was the first
        refused = admin.get("/api/v1/me")
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["status"] == 429
        # A write refused by the limit does nothing.
        blocked = admin.post("/api/v1/users", json={"username": f"x-{uuid.uuid4().hex[:6]}", "password": "p" * 12,
                                                    "role": "operator", "scope": "3701"})
        assert blocked.status_code == 429
    with limited.client(other_token) as other:
        assert other.get("/api/v1/me").status_code == 200
    with limited.client() as probe:
        assert all(probe.get("/healthz").status_code == 200 for _ in range(10))
    assert metric_value(limited.process.metrics(), "gateway_rate_limited_total", kind="user") >= 3


def test_unauthenticated_requests_are_limited_by_address(limited):
    with limited.client("not-a-valid-token") as stranger:
        statuses = [stranger.get("/api/v1/me").status_code for _ in range(PER_ADDRESS + 2)]
    assert 429 in statuses and set(statuses) <= {401, 429}
    assert metric_value(limited.process.metrics(), "gateway_rate_limited_total", kind="address") >= 1
