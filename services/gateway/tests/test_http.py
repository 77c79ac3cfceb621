"""The gateway over HTTP against real RabbitMQ and SecantusDB, with a fake organization
service answering its RPCs: auth, users, scope, RPC error mapping, bad input, operations."""

import asyncio
import json
import subprocess
import sys
import time
import uuid

import jwt
import pytest

from platform_testing import credit_code, metric_value
from platform_testing.actors import signer

from gateway_test_support import ADMIN_PASSWORD, JWT_SECRET  # noqa: E402
from gateway.rpc import RpcClient

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"


def unit_command(**overrides) -> dict:
    return {"credit_code": credit_code("370113"), "name": "顺丰速运济南历城分部", "type": "enterprise",
            "industry": "快递", "division": "370113001", "employees": 40, **overrides}


def assert_problem(response, status: int, *locs: list) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    for loc in locs:
        assert loc in [e["loc"] for e in body["errors"]], body
    return body


def last_call(gateway) -> dict:
    """What the fake organization service was last sent."""
    async def ask():
        client = RpcClient(gateway.amqp_uri, timeout=5, signer=signer())
        await client.start()
        try:
            return await client.call("organization", "last_call")
        finally:
            await client.close()
    return asyncio.run(ask())


# ---- authentication and users -------------------------------------------------------------

def test_token_and_me(gateway, admin_token):
    with gateway.client(admin_token) as client:
        me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == "admin" and me.json()["role"] == "admin"
    assert "password_hash" not in me.json()
    claims = jwt.decode(admin_token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "admin" and claims["role"] == "admin" and claims["exp"] > time.time()


@pytest.mark.parametrize("username,password", [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)])
def test_wrong_credentials_are_401(gateway, username, password):
    with gateway.client() as client:
        response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert_problem(response, 401)


def test_missing_forged_or_expired_token_is_401(gateway):
    expired = jwt.encode({"sub": "admin", "role": "admin", "exp": int(time.time()) - 10}, JWT_SECRET, "HS256")
    forged = jwt.encode({"sub": "admin", "role": "admin", "exp": int(time.time()) + 600},
                        "a-secret-as-long-as-the-real-one-but-not-it", "HS256")
    for token in (None, "garbage", expired, forged):
        with gateway.client(token) as client:
            response = client.get("/api/v1/units")
        body = assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in body["detail"] or "access" in body["detail"]


def test_admin_manages_users(gateway, admin, make_user):
    username, token = make_user("operator", "3701")
    users = admin.get("/api/v1/users", params={"limit": 500}).json()["items"]
    user = next(u for u in users if u["username"] == username)
    assert user["scope"] == "3701" and user["active"] is True and "password_hash" not in user

    # A non-admin may not manage accounts.
    with gateway.client(token) as client:
        assert_problem(client.post("/api/v1/users", json={"username": "x1234567", "password": "12345678",
                                                          "role": "admin"}), 403)
        assert_problem(client.get("/api/v1/users"), 403)

    # Role and scope are validated together.
    assert_problem(admin.post("/api/v1/users", json={"username": "op-bad", "password": "long-enough",
                                                     "role": "operator", "scope": "99"}), 422, ["body", "scope"])
    assert_problem(admin.post("/api/v1/users", json={"username": "op-short", "password": "short",
                                                     "role": "operator", "scope": "3701"}), 422, ["body", "password"])
    assert_problem(admin.post("/api/v1/users", json={"username": username, "password": "long-enough",
                                                     "role": "operator", "scope": "3701"}), 409)
    assert_problem(admin.patch(f"/api/v1/users/{user['id']}", json={"role": "secretary"}), 422, ["body", "scope"])

    narrowed = admin.patch(f"/api/v1/users/{user['id']}", json={"scope": "370113"})
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "370113"

    # Deactivation applies at once, to tokens already issued.
    assert admin.patch(f"/api/v1/users/{user['id']}", json={"active": False}).json()["active"] is False
    with gateway.client(token) as client:
        assert_problem(client.get("/api/v1/me"), 401)
    assert_problem(admin.patch("/api/v1/users/doesnotexist", json={"active": True}), 404)


def test_a_repeated_user_creation_with_its_idempotency_key_returns_the_first_account(admin):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"username": f"op-{uuid.uuid4().hex[:8]}", "password": "long-enough", "role": "operator", "scope": "3701"}
    first = admin.post("/api/v1/users", json=body, headers=key)
    repeat = admin.post("/api/v1/users", json=body, headers=key)
    assert first.status_code == repeat.status_code == 201 and repeat.json() == first.json()
    # The same key for another account is refused, and creates nothing.
    other = {**body, "username": f"op-{uuid.uuid4().hex[:8]}"}
    assert_problem(admin.post("/api/v1/users", json=other, headers=key), 422, ["header", "Idempotency-Key"])
    names = {u["username"] for u in admin.get("/api/v1/users", params={"limit": 500}).json()["items"]}
    assert body["username"] in names and other["username"] not in names
    # Without a key, a second creation of the same name is a conflict, as before.
    assert_problem(admin.post("/api/v1/users", json=body), 409)


def test_a_change_of_scope_applies_to_the_next_request(gateway, admin, make_user):
    """Accounts are cached for authentication, and a change through PATCH drops the copy."""
    username, token = make_user("operator", "3701")
    user_id = next(u["id"] for u in admin.get("/api/v1/users", params={"limit": 500}).json()["items"]
                   if u["username"] == username)
    with gateway.client(token) as client:
        assert client.get("/api/v1/units").status_code == 200  # authenticated: the account is cached now
        assert last_call(gateway)["actor"]["scope"] == "3701"
        assert admin.patch(f"/api/v1/users/{user_id}", json={"scope": "370113"}).status_code == 200
        assert client.get("/api/v1/units").status_code == 200
        assert last_call(gateway)["actor"]["scope"] == "370113"
        assert admin.patch(f"/api/v1/users/{user_id}", json={"active": False}).status_code == 200
        assert_problem(client.get("/api/v1/units"), 401)


def test_roles_without_division_access_get_403(gateway, make_user):
    _, secretary = make_user("secretary", ["org-1"])
    _, worker = make_user("worker", "member-1")
    for token in (secretary, worker):
        with gateway.client(token) as client:
            assert client.get("/api/v1/me").status_code == 200
            assert_problem(client.get("/api/v1/units"), 403)
            assert_problem(client.post("/api/v1/units", json=unit_command()), 403)
            assert_problem(client.get("/api/v1/coverage"), 403)


def test_operator_is_kept_to_their_division(gateway, make_user):
    username, token = make_user("operator", "3701")
    with gateway.client(token) as client:
        assert_problem(client.get("/api/v1/units", params={"division": "3702"}), 403, ["query", "division"])
        assert_problem(client.get("/api/v1/coverage", params={"division": "37"}), 403, ["query", "division"])
        assert_problem(client.post("/api/v1/coverage/reconcile"), 403)
        assert client.get("/api/v1/units").status_code == 200
    call = last_call(gateway)
    # No division asked for: the operator's scope is applied, and the service gets the actor.
    assert call["filters"] == {"division": "3701"}
    assert call["actor"] == {"username": username, "role": "operator", "scope": "3701"}


# ---- RPC to the organization service -------------------------------------------------------

def test_register_unit_calls_the_service(admin):
    command = unit_command()
    response = admin.post("/api/v1/units", json=command)
    assert response.status_code == 201, response.text
    assert response.json()["credit_code"] == command["credit_code"] and response.json()["coverage"] == "none"


def test_idempotency_key_becomes_the_command_id(gateway, admin):
    key = uuid.uuid4().hex
    command = unit_command()
    first = admin.post("/api/v1/units", json=command, headers={"Idempotency-Key": key})
    sent = last_call(gateway)["command_id"]
    assert sent["key"] == f"admin:{key}" and len(sent["request"]) == 64
    # A retry sends the same request: the same fingerprint, however the JSON is laid out.
    again = admin.post("/api/v1/units", content=json.dumps(command, indent=2, ensure_ascii=False).encode(),
                       headers={"Idempotency-Key": key, "content-type": "application/json"})
    assert last_call(gateway)["command_id"] == sent
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    other = admin.post("/api/v1/units", json=unit_command())
    assert other.json()["id"] != first.json()["id"]


def test_the_fingerprint_ignores_the_order_of_query_parameters(gateway, admin):
    key, command = uuid.uuid4().hex, unit_command()
    admin.post("/api/v1/units?source=ledger&batch=7", json=command, headers={"Idempotency-Key": key})
    first = last_call(gateway)["command_id"]
    admin.post("/api/v1/units?batch=7&source=ledger", json=command, headers={"Idempotency-Key": key})
    assert last_call(gateway)["command_id"] == first


def test_the_same_key_on_another_request_has_another_fingerprint(gateway, admin):
    key = uuid.uuid4().hex
    admin.post("/api/v1/units", json=unit_command(), headers={"Idempotency-Key": key})
    first = last_call(gateway)["command_id"]
    admin.post("/api/v1/units", json=unit_command(), headers={"Idempotency-Key": key})
    assert last_call(gateway)["command_id"]["key"] == first["key"]
    assert last_call(gateway)["command_id"]["request"] != first["request"]


def test_rejected_problem_is_passed_through(admin):
    body = assert_problem(admin.get("/api/v1/units/missing"), 404)
    assert body["detail"] == "unit missing does not exist"
    assert body["type"].endswith("/404")
    # nameko stringifies exception arguments; the status and list indexes come back as numbers.
    assert_problem(admin.get("/api/v1/units/conflict"), 422, ["body", "organization_ids", 0])


def test_service_failure_is_502_without_internals(admin):
    body = assert_problem(admin.get("/api/v1/units/boom"), 502)
    assert "mongodb" not in body["detail"] and "RuntimeError" not in body["detail"]


def test_slow_service_is_504(admin):
    body = assert_problem(admin.get("/api/v1/units/slow"), 504)
    assert body["detail"].startswith("service organization did not answer in time")
    assert "same Idempotency-Key" in body["detail"] and body["retry_with_same_idempotency_key"] is True


def test_absent_service_is_503(admin):
    # A registered service that is not running here (an unknown name is a 422): returned by the
    # broker at once as 503, where a call that waited out its timeout would be a 504.
    body = assert_problem(admin.get("/api/v1/admin/dead-letters", params={"service": "member"}), 503)
    assert "member" in body["detail"] and "not running" in body["detail"]


# ---- bad input ------------------------------------------------------------------------------

def test_malformed_json_is_400(admin):
    response = admin.post("/api/v1/units", content=b'{"credit_code": "91', headers={"content-type": "application/json"})
    assert_problem(response, 400)


def test_invalid_fields_are_named(admin):
    assert_problem(admin.post("/api/v1/units", json=unit_command(credit_code="91370113MA3C8YWQ0X")), 422,
                   ["body", "credit_code"])
    assert_problem(admin.post("/api/v1/units", json=unit_command(employees="many", division="12")), 422,
                   ["body", "employees"], ["body", "division"])
    assert_problem(admin.post("/api/v1/units", json=[1, 2]), 422)
    assert_problem(admin.post("/api/v1/units", json=unit_command(unexpected=True)), 422, ["body", "unexpected"])
    assert_problem(admin.get("/api/v1/units", params={"limit": 501}), 422, ["query", "limit"])
    assert_problem(admin.get("/api/v1/units", params={"limit": "ten"}), 422, ["query", "limit"])
    assert_problem(admin.get("/api/v1/units", params={"coverage": "most"}), 422, ["query", "coverage"])
    assert_problem(admin.get("/api/v1/organizations", params={"division": "990101"}), 422, ["query", "division"])
    assert_problem(admin.get("/api/v1/coverage/breakdown", params={"by": "colour"}), 422, ["query", "by"])
    assert_problem(admin.patch("/api/v1/units/u1", json={}), 422, ["body"])
    assert_problem(admin.post("/api/v1/organizations/o1/units", json={"unit_id": "../etc"}), 422,
                   ["body", "unit_id"])
    assert_problem(admin.post("/api/v1/units", json=unit_command(), headers={"Idempotency-Key": "k" * 300}), 422,
                   ["header", "idempotency-key"])


@pytest.mark.parametrize("path, field", [
    *[("/api/v1/units/u1", f) for f in ("name", "type", "industry", "division", "employees", "above_scale")],
    *[("/api/v1/organizations/o1", f) for f in ("name", "kind", "online")],
])
def test_a_null_for_a_field_that_cannot_be_cleared_is_422_naming_it(admin, path, field):
    assert_problem(admin.patch(path, json={field: None}), 422, ["body", field])


def test_a_user_patch_refuses_null_except_for_scope(admin, make_user):
    username, _ = make_user("operator", "3701")
    user = next(u for u in admin.get("/api/v1/users", params={"limit": 500}).json()["items"]
                if u["username"] == username)
    for field in ("active", "role", "password"):
        assert_problem(admin.patch(f"/api/v1/users/{user['id']}", json={field: None}), 422, ["body", field])
    assert admin.get(f"/api/v1/users/{user['id']}").json() == user  # unchanged
    assert_problem(admin.patch(f"/api/v1/users/{user['id']}", json={"scope": None}), 422, ["body", "scope"])


def test_units_are_listed_by_status(gateway, admin):
    assert admin.get("/api/v1/units", params={"status": "deregistered"}).status_code == 200
    assert last_call(gateway)["filters"] == {"status": "deregistered"}
    assert admin.get("/api/v1/units").status_code == 200
    assert "status" not in last_call(gateway)["filters"]  # the service's default: active
    assert_problem(admin.get("/api/v1/units", params={"status": "gone"}), 422, ["query", "status"])


@pytest.mark.parametrize("division", ["37011３", "370113000", "370113001000"])
def test_division_filters_take_real_ascii_codes(admin, division):
    assert_problem(admin.get("/api/v1/units", params={"division": division}), 422, ["query", "division"])
    assert_problem(admin.post("/api/v1/units", json=unit_command(division=division)), 422, ["body", "division"])


def test_unknown_route_and_method_are_problems(admin):
    assert_problem(admin.get("/api/v1/nothing-here"), 404)
    assert_problem(admin.delete("/api/v1/coverage"), 405)


# ---- operations -----------------------------------------------------------------------------

def test_metrics_are_openmetrics_when_asked_and_never_created_series(gateway, admin):
    """`python -m gateway` disables prometheus_client's `<name>_created` samples, and /metrics
    speaks OpenMetrics to a scraper whose Accept asks for it (Prometheus does), the classic
    text to one that does not (service_kit.exposition)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    admin.get("/api/v1/units/missing")  # counter and histogram children to expose
    prometheus_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    with gateway.client() as client:
        plain = client.get("/metrics")
        asked = client.get("/metrics", headers={"Accept": prometheus_accept})
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert asked.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert plain.headers["vary"] == asked.headers["vary"] == "Accept"
    for response in (plain, asked):
        assert "gateway_http_requests_total{" in response.text
        assert "gateway_http_request_duration_seconds_bucket{" in response.text
        assert "_created" not in response.text
    assert "# EOF" not in plain.text and asked.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(asked.text)}
    assert families["gateway_http_requests"].type == "counter"


def test_health_readiness_metrics_and_docs(gateway, admin):
    admin.get("/api/v1/units/missing")
    with gateway.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready"}
        metrics = client.get("/metrics").text
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
    assert metric_value(metrics, "gateway_http_requests_total", method="GET", route="/api/v1/units/{unit_id}",
                        status="404") >= 1
    assert "/api/v1/units/missing" not in metrics  # route templates only, never raw paths
    assert metric_value(metrics, "gateway_rpc_duration_seconds_count", service="organization",
                        method="get_unit", outcome="rejected") >= 1
    assert 'gateway_event_stream_clients{transport="sse"}' in metrics
    assert "/api/v1/events/stream" in spec["paths"] and "/api/v1/coverage/breakdown" in spec["paths"]
    assert {"RegisterUnit", "CreateOrganization", "Unit", "CoverageFigures"} <= set(spec["components"]["schemas"])
    # A PATCH field that cannot be cleared is documented without null.
    patch = spec["components"]["schemas"]["UpdateUnit"]["properties"]
    assert patch["name"]["type"] == "string" and "default" not in patch["name"]


def test_migrate_command(gateway):
    result = subprocess.run([sys.executable, "-m", "gateway", "migrate"], env={**gateway.env, "PATH": "/usr/bin:/bin"},
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
