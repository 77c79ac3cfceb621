"""The stations API end to end: the gateway (started as production starts it) in front of the
real service-station and organization services, over HTTP and SSE. Every bad input is a problem
document naming the field (never a 500); a supply running low reaches its manager's stream as
the event and as a notification."""

import asyncio
import json
import pathlib
import sys
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from httpx_sse import aconnect_sse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "gateway" / "tests"))
from gateway_test_support import ADMIN_PASSWORD, start_gateway  # noqa: E402

pytestmark = pytest.mark.timeout(120)
API = "/api/v1"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def gateway(services, mongodb_uri, amqp_uri, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("gateway"),
                       MONGODB_GATEWAY_DB=f"gateway_stations_{uuid.uuid4().hex[:6]}")
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture(scope="module")
def admin(gateway):
    with gateway.client(gateway.token("admin", ADMIN_PASSWORD)) as client:
        yield client


@pytest.fixture(scope="module")
def make_user(gateway, admin):
    def make(role: str, scope=None) -> tuple[str, str]:
        username, password = f"{role}-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
        response = admin.post(f"{API}/users", json={"username": username, "password": password, "role": role,
                                                    "scope": scope})
        assert response.status_code == 201, response.text
        return username, gateway.token(username, password)
    return make


def spot() -> tuple[float, float]:
    n = uuid.uuid4().int
    return round(116.75 + (n % 1000) * 0.0002, 6), round(36.45 + (n // 1000 % 1000) * 0.0002, 6)


def new_station(client, **fields) -> dict:
    lng, lat = spot()
    body = {"kind": "warm_station", "name": "暖新驿站", "division": "370113001", "address": "长清区",
            "location": {"lng": lng, "lat": lat}, "amenities": ["water"], "opening_hours": "24/7", **fields}
    response = client.post(f"{API}/stations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


def locs(document: dict) -> list:
    return [e["loc"] for e in document.get("errors", [])]


def test_register_find_change_and_close_over_http(admin, make_user):
    lng, lat = spot()
    key = uuid.uuid4().hex
    body = {"kind": "service_center", "name": "党群服务中心", "division": "370113001", "address": "长清区",
            "location": {"lng": lng, "lat": lat}, "amenities": ["water", "wifi"], "opening_hours": "24/7"}
    first = admin.post(f"{API}/stations", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    station = first.json()
    assert admin.post(f"{API}/stations", json=body, headers={"Idempotency-Key": key}).json()["id"] == station["id"]
    found = admin.get(f"{API}/stations", params={"near": f"{lng},{lat}", "radius_m": 100, "open_now": "true",
                                                 "amenity": "water,wifi"}).json()
    assert [s["id"] for s in found["items"]] == [station["id"]] and found["items"][0]["distance_m"] == 0
    assert admin.get(f"{API}/stations/{station['id']}").json()["location_gcj02"]
    keeper, _ = make_user("station_manager", [station["id"]])
    changed = admin.patch(f"{API}/stations/{station['id']}", json={"capacity": 12, "manager": keeper}).json()
    assert (changed["capacity"], changed["manager"], changed["version"]) == (12, keeper, 2)
    closed = admin.post(f"{API}/stations/{station['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert admin.get(f"{API}/stations", params={"near": f"{lng},{lat}", "radius_m": 100}).json()["items"] == []
    assert problem(admin.post(f"{API}/stations/{station['id']}/close"), 409)


@pytest.mark.parametrize("params, loc", [
    ({"near": "abc"}, ["query", "near"]),
    ({"near": "36.6,117.0"}, ["query", "near"]),
    ({"near": "117.0,36.6", "radius_m": "0"}, ["query", "radius_m"]),
    ({"near": "117.0,36.6", "radius_m": "lots"}, ["query", "radius_m"]),
    ({"near": "117.0,36.6", "coord_sys": "utm"}, ["query", "coord_sys"]),
    ({"radius_m": "100"}, ["query", "radius_m"]),
    ({"open_now": "yes"}, ["query", "open_now"]),
    ({"open_at": "2026-03-09T10:00:00"}, ["query", "open_at"]),
    ({"open_at": "2099-03-09T10:00:00+08:00"}, ["query", "open_at"]),
    ({"amenity": "water,sauna"}, ["query", "amenity", 1]),
    ({"kind": "igloo"}, ["query", "kind"]),
    ({"division": "3701x"}, ["query", "division"]),
    ({"limit": "0"}, ["query", "limit"]),
    ({"near": "117.0,36.6", "cursor": "YWJj"}, ["query", "cursor"]),
])
def test_bad_searches_are_problems_naming_the_parameter(admin, params, loc):
    assert loc in locs(problem(admin.get(f"{API}/stations", params=params), 422))


@pytest.mark.parametrize("fields, loc", [
    ({"opening_hours": "Mo-Fr 8-20 bogus"}, ["body", "opening_hours"]),
    ({"location": {"lng": 2.35, "lat": 48.85}}, ["body", "location"]),
    ({"location": {"lng": "117", "lat": 36.6}}, ["body", "location", "lng"]),
    ({"division": "370181001"}, ["body", "division"]),
    ({"amenities": ["sauna"]}, ["body", "amenities", 0]),
    ({"manager": "two words"}, ["body", "manager"]),
])
def test_bad_registrations_are_problems_naming_the_field(admin, fields, loc):
    lng, lat = spot()
    body = {"kind": "warm_station", "name": "x", "division": "370113001", "address": "x",
            "location": {"lng": lng, "lat": lat}, "opening_hours": "24/7", **fields}
    assert loc in locs(problem(admin.post(f"{API}/stations", json=body), 422))


def test_supplies_visits_and_utilisation_over_http(admin, make_user):
    station = new_station(admin)
    sid = station["id"]
    put = admin.put(f"{API}/stations/{sid}/supplies/矿泉水", json={"quantity": 5, "low_threshold": 2, "unit": "瓶"})
    assert put.status_code == 200 and put.json()["item"] == "矿泉水"
    took = admin.post(f"{API}/stations/{sid}/supplies/矿泉水/adjust", json={"delta": -4, "reason": "发放"}).json()
    assert (took["quantity"], took["low"]) == (1, True)
    refused = problem(admin.post(f"{API}/stations/{sid}/supplies/矿泉水/adjust", json={"delta": -2, "reason": "x"}),
                      409)
    assert locs(refused) == [["body", "delta"]]
    assert locs(problem(admin.post(f"{API}/stations/{sid}/supplies/a.b/adjust", json={"delta": 1, "reason": "x"}),
                        422)) == [["path", "item"]]
    assert problem(admin.post(f"{API}/stations/{sid}/supplies/tea/adjust", json={"delta": 1, "reason": "x"}), 404)
    assert ["body", "delta"] in locs(problem(admin.post(f"{API}/stations/{sid}/supplies/矿泉水/adjust",
                                                        json={"delta": 0, "reason": "x"}), 422))
    assert problem(admin.put(f"{API}/stations/nope/supplies/water", json={"quantity": 1, "low_threshold": 0}), 404)

    _, worker_token = make_user("worker", "m-http")
    with httpx.Client(base_url=str(admin.base_url), headers={"Authorization": f"Bearer {worker_token}"}) as worker:
        visit = worker.post(f"{API}/stations/{sid}/visits", json={"visitor": "member", "member_id": "m-http"})
        assert visit.status_code == 201 and visit.json()["by"].startswith("worker-")
        assert problem(worker.post(f"{API}/stations/{sid}/visits", json={"visitor": "member", "member_id": "m-other"}),
                       403)
        assert problem(worker.put(f"{API}/stations/{sid}/supplies/water", json={"quantity": 1, "low_threshold": 0}),
                       403)
        assert worker.get(f"{API}/stations/{sid}").status_code == 200
    assert admin.post(f"{API}/stations/{sid}/visits").status_code == 201  # no body: anonymous
    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    used = admin.get(f"{API}/stations/{sid}/utilisation", params={"from": today, "to": today}).json()
    assert used["from"] == today and used["total"] == 2 and used["days"][0]["visits"] == {"member": 1, "anonymous": 1}
    assert ["query", "from"] in locs(problem(admin.get(f"{API}/stations/{sid}/utilisation", params={"to": today}),
                                             422))
    assert problem(admin.get(f"{API}/stations/{sid}/utilisation", params={"from": today, "to": "2000-01-01"}), 422)


def test_activities_and_sign_ups_over_http(admin, make_user):
    station = new_station(admin)
    sid = station["id"]
    starts = datetime.now(timezone.utc) + timedelta(days=1)
    created = admin.post(f"{API}/stations/{sid}/activities", json={
        "title": "秋季助学", "season": "autumn_school_aid", "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 1, "description": "助学金申请"})
    assert created.status_code == 201
    activity = created.json()
    _, worker_token = make_user("worker", "m-signup")
    with httpx.Client(base_url=str(admin.base_url), headers={"Authorization": f"Bearer {worker_token}"}) as worker:
        mine = worker.post(f"{API}/stations/{sid}/activities/{activity['id']}/sign-ups")
        assert mine.status_code == 201 and mine.json()["member_id"] == "m-signup"
    full = admin.post(f"{API}/stations/{sid}/activities/{activity['id']}/sign-ups", json={})
    assert problem(full, 409)["detail"]
    cancelled = admin.delete(f"{API}/stations/{sid}/activities/{activity['id']}/sign-ups/{mine.json()['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert admin.get(f"{API}/stations/{sid}/activities/{activity['id']}").json()["places_left"] == 1
    assert [a["id"] for a in admin.get(f"{API}/stations/{sid}/activities").json()["items"]] == [activity["id"]]
    assert problem(admin.post(f"{API}/stations/{sid}/activities", json={
        "title": "x", "starts_at": "tomorrow", "capacity": 0}), 422)
    assert problem(admin.post(f"{API}/stations/{sid}/activities/nope/sign-ups", json={}), 404)
    assert admin.post(f"{API}/stations/{sid}/activities/{activity['id']}/cancel",
                      json={"reason": "下雨"}).json()["status"] == "cancelled"


def test_the_calendar_is_loaded_by_admins(admin, make_user):
    year = datetime.now().year + 6
    body = {"year": year, "holidays": [f"{year}-10-01"], "workdays": []}
    assert admin.put(f"{API}/calendar/{year}", json=body).json()["holidays"] == [f"{year}-10-01"]
    assert any(o["year"] == year for o in admin.get(f"{API}/calendar").json()["overrides"])
    assert locs(problem(admin.put(f"{API}/calendar/{year + 1}", json=body), 422)) == [["body", "year"]]
    _, operator_token = make_user("operator", "370113")
    with httpx.Client(base_url=str(admin.base_url), headers={"Authorization": f"Bearer {operator_token}"}) as op:
        assert problem(op.put(f"{API}/calendar/{year}", json=body), 403)


async def test_a_supply_running_low_reaches_its_manager_as_event_and_notification(gateway, admin, make_user):
    station = new_station(admin)
    username, token = make_user("station_manager", [station["id"]])
    assert admin.patch(f"{API}/stations/{station['id']}", json={"manager": username}).status_code == 200
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=15) as client:
        put = await client.put(f"{API}/stations/{station['id']}/supplies/water", json={"quantity": 3,
                                                                                        "low_threshold": 2})
        assert put.status_code == 200, put.text
        async with aconnect_sse(client, "GET", f"{API}/events/stream",
                                params={"types": "notification.*"}) as source:
            took = await client.post(f"{API}/stations/{station['id']}/supplies/water/adjust",
                                     json={"delta": -2, "reason": "发放"})
            assert took.status_code == 200, took.text
            async with asyncio.timeout(15):
                async for event in source.aiter_sse():
                    data = json.loads(event.data)["data"]
                    if data["type"] == "station.supply_low" and data["subject"] == station["id"]:
                        break
    # The admin's stream shows the event itself.
    async with httpx.AsyncClient(base_url=gateway.url, headers=admin.headers, timeout=15) as client:
        async with aconnect_sse(client, "GET", f"{API}/events/stream",
                                params={"types": "station.supply_low"}, headers={"Last-Event-ID": "0"}) as source:
            async with asyncio.timeout(15):
                async for event in source.aiter_sse():
                    if json.loads(event.data)["subject"] == station["id"]:
                        break


def test_a_manager_must_be_an_active_account(admin, make_user, gateway):
    """Issue 13: a station's manager is a person the platform knows, who is told when supplies
    run low. An unknown username and a deactivated account are refused alike (422 naming
    manager, nothing written)."""
    gone, _ = make_user("station_manager", ["s-gone"])
    account = next(u for u in admin.get(f"{API}/users", params={"limit": 500}).json()["items"] if u["username"] == gone)
    assert admin.patch(f"{API}/users/{account['id']}", json={"active": False}).status_code == 200
    for manager in ("nobody-" + uuid.uuid4().hex[:6], gone):
        lng, lat = spot()
        refused = admin.post(f"{API}/stations", json={
            "kind": "warm_station", "name": "无人驿站", "division": "370113001", "address": "长清区",
            "location": {"lng": lng, "lat": lat}, "opening_hours": "24/7", "manager": manager})
        assert locs(problem(refused, 422)) == [["body", "manager"]]
        assert admin.get(f"{API}/stations", params={"near": f"{lng},{lat}", "radius_m": 50}).json()["items"] == []
    station = new_station(admin)
    assert locs(problem(admin.patch(f"{API}/stations/{station['id']}", json={"manager": gone}), 422)) == \
        [["body", "manager"]]
