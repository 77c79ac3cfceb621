"""End to end, over HTTP, on the platform as `make run` starts it: an operator's day with
units, organizations and instructors while a frontend listens on the event stream."""

import json
import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from platform_testing import credit_code, free_port, wait_for
from tests.harness import ROOT

pytestmark = pytest.mark.slow


def unit_body(division: str, **fields) -> dict:
    return {"credit_code": credit_code(division), "name": f"企业{uuid.uuid4().hex[:4]}", "type": "enterprise",
            "industry": "express", "division": division, **fields}


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def problem_fields(response: httpx.Response) -> set:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {tuple(e["loc"]) for e in response.json().get("errors") or []}


def test_coverage_moves_live_on_the_stream(platform, sse):
    division = "370113101"
    stream = sse({"types": "unit.*,organization.*,coverage.*", "division": division})
    with platform.client() as api:
        first = created(api.post("/units", json=unit_body(division + "001")))
        second = created(api.post("/units", json=unit_body(division + "002")))
        coverage = api.get("/coverage", params={"division": division}).json()
        assert (coverage["units"], coverage["uncovered"], coverage["organization_rate"]) == (2, 2, 0.0)

        organization = created(api.post("/organizations", json={
            "name": "快递企业支部", "kind": "branch", "formation": "standalone", "division": division,
            "unit_ids": [first["id"]], "secretary": "李书记"}))
        instructor = created(api.post("/instructors", json={"name": "王指导员", "phone": "13912345678",
                                                              "division": division}))
        assert instructor["phone"] == "139****5678"
        response = api.put(f"/units/{second['id']}/instructor", json={"instructor_id": instructor["id"]})
        assert response.status_code == 200 and response.json()["coverage"] == "work"

        coverage = api.get("/coverage", params={"division": division}).json()
        assert (coverage["organization_covered"], coverage["work_covered"], coverage["uncovered"]) == (1, 1, 0)
        assert (coverage["organization_rate"], coverage["standalone_rate"]) == (0.5, 0.5)
        assert api.get(f"/units/{first['id']}").json()["coverage"] == "organization"
        breakdown = api.get("/coverage/breakdown", params={"by": "division", "division": division}).json()
        assert sorted(i["division"] for i in breakdown["items"]) == [division + "001", division + "002"]

    created_event = stream.wait_for(lambda e: e["type"] == "organization.created")[0]["data"]
    assert created_event["subject"] == organization["id"] and created_event["specversion"] == "1.0"
    changes = stream.wait_for(lambda e: e["type"] == "coverage.changed" and e["data"]["after"]["organization_covered"] == 1
                              and e["subject"] == division + "001")
    change = changes[-1]["data"]["data"]
    assert change["before"]["organization_covered"] == 0 and change["after"]["organization_rate"] == 1.0
    district = next(s for s in change["scopes"] if s["division"] == "370113")
    assert district["after"]["organization_covered"] == district["before"]["organization_covered"] + 1
    types = [e["data"]["type"] for e in stream.events]
    assert "unit.registered" in types and "instructor.assigned" not in types  # filtered out by type
    assert all(e["data"]["division"].startswith(division) for e in stream.events)

    # A frontend that reconnects resumes after the last id it saw: no gap, no duplicate.
    seen = list(stream.events)
    resumed = sse({"types": "unit.*,organization.*,coverage.*", "division": division}, last_event_id=seen[1]["id"])
    wait_for(lambda: len(resumed.events) >= len(seen) - 2, what="replayed events")
    assert [e["data"]["id"] for e in resumed.events[: len(seen) - 2]] == [e["data"]["id"] for e in seen[2:]]


def test_idempotency_key_returns_the_first_result(platform):
    body = unit_body("370113102")
    with platform.client() as api:
        key = uuid.uuid4().hex
        one = created(api.post("/units", json=body, headers={"Idempotency-Key": key}))
        two = api.post("/units", json=body, headers={"Idempotency-Key": key})
        assert two.status_code in (200, 201) and two.json()["id"] == one["id"]
        units = api.get("/units", params={"division": "370113102"}).json()["items"]
        assert [u["id"] for u in units] == [one["id"]]


def test_an_idempotency_key_reused_on_another_request_is_refused_and_changes_nothing(platform):
    """Issue 16, item 8, end to end: the same key on a different body, or on another operation,
    is a 422 naming the header — not the first request's result, and no second write."""
    division = "370113104"
    with platform.client() as api:
        key = uuid.uuid4().hex
        first = created(api.post("/units", json=unit_body(division), headers={"Idempotency-Key": key}))
        other_body = api.post("/units", json=unit_body(division), headers={"Idempotency-Key": key})
        other_operation = api.post("/instructors", json={"name": "王指导员", "phone": "13812345678",
                                                         "division": division}, headers={"Idempotency-Key": key})
        for response in (other_body, other_operation):
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        units = api.get("/units", params={"division": division}).json()["items"]
        assert [u["id"] for u in units] == [first["id"]]
        assert api.get("/instructors", params={"division": division}).json()["items"] == []


def test_bad_input_is_refused_with_the_field_named_and_nothing_written(platform):
    division = "370113103"
    with platform.client() as api:
        def unit_count():
            return len(api.get("/units", params={"division": division, "limit": 500}).json()["items"])

        units = [created(api.post("/units", json=unit_body(division))) for _ in range(4)]
        before = unit_count()

        response = api.post("/units", content=b'{"credit_code": ', headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.headers["content-type"].startswith("application/problem+json")

        response = api.post("/units", json={**unit_body(division), "employees": "many"})
        assert response.status_code == 422 and ("body", "employees") in problem_fields(response)

        response = api.post("/units", json={**unit_body(division), "credit_code": "91350100M000100Y44"})
        assert response.status_code == 422 and ("body", "credit_code") in problem_fields(response)

        response = api.post("/units", json=unit_body("370199001"))  # no such district registered
        assert response.status_code == 422 and ("body", "division") in problem_fields(response)

        response = api.post("/organizations", json={"name": "过大联合支部", "kind": "joint_branch",
                                                    "formation": "joint", "division": division,
                                                    "unit_ids": [u["id"] for u in units]})
        assert response.status_code == 422 and ("body", "unit_ids") in problem_fields(response)

        joint = created(api.post("/organizations", json={"name": "联合支部", "kind": "joint_branch",
                                                         "formation": "joint", "division": division,
                                                         "unit_ids": [units[0]["id"]]}))
        assert api.post(f"/organizations/{joint['id']}/dissolve").status_code == 200
        response = api.post(f"/organizations/{joint['id']}/units", json={"unit_id": units[1]["id"]})
        assert response.status_code == 409 and ("path", "organization_id") in problem_fields(response)
        assert api.get(f"/units/{units[1]['id']}").json()["organization_ids"] == []

        assert api.get("/units/does-not-exist").status_code == 404
        assert api.get("/units", params={"limit": 501}).status_code == 422
        assert unit_count() == before
        assert httpx.get(f"{platform.gateway_url}/readyz").status_code == 200


def test_tokens_and_operator_scope(platform):
    with platform.client() as api:
        name = f"op{uuid.uuid4().hex[:6]}"
        response = api.post("/users", json={"username": name, "password": "s3cret-pass", "role": "operator",
                                            "scope": "370112"})
        assert response.status_code == 201, response.text
        elsewhere = created(api.post("/units", json=unit_body("370113104")))
    operator = platform.token(name, "s3cret-pass")
    with platform.client(operator) as api:
        assert api.get("/me").json()["scope"] == "370112"
        mine = api.post("/units", json=unit_body("370112001"))
        assert mine.status_code == 201, mine.text
        assert api.get(f"/units/{elsewhere['id']}").status_code == 403
        assert api.get("/coverage", params={"division": "370113"}).status_code == 403
        assert api.post("/units", json=unit_body("370113104")).status_code == 403
        assert all(u["division"].startswith("370112") for u in api.get("/units").json()["items"])
        assert api.post("/users", json={"username": "x", "password": "12345678", "role": "admin"}).status_code == 403
    assert httpx.get(f"{platform.gateway_url}/api/v1/units").status_code == 401
    bad = httpx.get(f"{platform.gateway_url}/api/v1/units", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem+json")
    assert httpx.post(f"{platform.gateway_url}/api/v1/auth/token",
                      json={"username": name, "password": "wrong"}).status_code == 401


def test_websocket_receives_subscribed_events(platform):
    from websockets.sync.client import connect

    division = "370113105"
    url = platform.gateway_url.replace("http", "ws") + f"/api/v1/events/ws?access_token={platform.admin_token()}"
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"subscribe": {"types": ["unit.registered"], "division": division}}))
        with platform.client() as api:
            unit = created(api.post("/units", json=unit_body(division)))
        deadline_messages = []
        while True:
            message = json.loads(ws.recv(timeout=15))
            if "event" in message:
                deadline_messages.append(message)
                if message["event"]["subject"] == unit["id"]:
                    break
        assert message["event"]["type"] == "unit.registered" and message["id"]


def test_openapi_and_metrics_are_served(platform):
    spec = httpx.get(f"{platform.gateway_url}/openapi.json").json()
    for path in ("/api/v1/units", "/api/v1/organizations", "/api/v1/coverage", "/api/v1/auth/token"):
        assert path in spec["paths"]
    assert httpx.get(f"{platform.gateway_url}/docs").status_code == 200
    for target in platform.metrics_targets.values():
        assert httpx.get(f"http://{target}/healthz").status_code == 200
        assert httpx.get(f"http://{target}/readyz").status_code == 200
        assert "# TYPE" in httpx.get(f"http://{target}/metrics").text


def test_ledger_import_through_the_gateway(platform):
    division = "370113106"
    units = [unit_body(division) for _ in range(30)]
    with platform.client() as api:
        response = api.post("/units/bulk", json={"units": [*units[:5], {**units[5], "type": "shop"}, *units[6:]]})
        assert response.status_code == 422 and ("body", "units", 5, "type") in problem_fields(response)
        assert api.get("/coverage", params={"division": division}).json()["units"] == 0
        response = api.post("/units/bulk", json={"units": units})
        assert response.status_code == 201, response.text
        assert len(response.json()["items"]) == 30
        assert api.get("/coverage", params={"division": division}).json()["units"] == 30
        report = api.post("/coverage/reconcile", params={"repair": "false"}).json()
        assert report["drifted_counters"] == 0 and report["repaired"] is False


def test_patch_null_deregistered_units_and_dissolved_organizations_over_http(platform):
    division = "370113107"
    with platform.client() as api:
        unit = created(api.post("/units", json=unit_body(division)))
        response = api.patch(f"/units/{unit['id']}", json={"name": None})
        assert response.status_code == 422 and ("body", "name") in problem_fields(response)
        assert api.patch(f"/units/{unit['id']}", json={"address": None}).status_code == 200

        joint = created(api.post("/organizations", json={"name": "联合支部", "kind": "joint_branch",
                                                         "formation": "joint", "division": division,
                                                         "unit_ids": [unit["id"]]}))
        response = api.patch(f"/organizations/{joint['id']}", json={"kind": None})
        assert response.status_code == 422 and ("body", "kind") in problem_fields(response)
        dissolved = api.post(f"/organizations/{joint['id']}/dissolve").json()
        assert (dissolved["unit_ids"], dissolved["former_unit_ids"]) == ([], [unit["id"]])

        assert api.post(f"/units/{unit['id']}/deregister").status_code == 200
        response = api.patch(f"/units/{unit['id']}", json={"name": "改名"})
        assert response.status_code == 409 and ("path", "unit_id") in problem_fields(response)
        listed = api.get("/units", params={"division": division, "status": "deregistered"}).json()["items"]
        assert [u["id"] for u in listed] == [unit["id"]]
        assert api.get("/units", params={"division": division}).json()["items"] == []


def test_a_second_platform_on_the_same_vhost_refuses_to_start(platform, tmp_path):
    """Two platforms on one vhost would answer each other's RPCs: the second one stops first."""
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "ADMIN_PASSWORD")}
    env.update(AMQP_URI=platform.amqp_uri, PLATFORM_DATA_DIR=str(tmp_path), SECANTUS_PORT=str(free_port()),
               GATEWAY_PORT=str(free_port()), ORGANIZATION_HTTP_PORT=str(free_port()), MEMBER_HTTP_PORT=str(free_port()))
    second = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_platform.py")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.send_signal(signal.SIGINT)  # it started after all: let it stop what it started
        second.communicate(timeout=60)
        raise
    assert second.returncode != 0
    assert "rpc-organization" in stderr and "another platform" in stderr, stderr
    assert not (tmp_path / "secantus").exists() and not (tmp_path / "logs").exists()  # nothing was started
