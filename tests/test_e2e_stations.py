"""Issue 13 end to end, on the platform as `make run` starts it: a warm station registered
through the gateway, found from a rider's GCJ-02 position (and not from the same numbers read
as WGS-84), open now; its manager (a station_manager account) sees `station.supply_low` and
its notification on the live stream once when water runs low, and the restock; a member checks
in there (the member service knows the station from its events) and a visit is counted; the
utilisation query shows both."""

import uuid
from datetime import datetime, timezone

import pytest

from platform_contracts import geo
from platform_testing import wait_for
from tests.test_e2e_transfers import PASSWORD, created, full_member, joint_branch, ok, unit_body

pytestmark = pytest.mark.slow

DIVISION = "370113401"
WGS84 = (116.7421, 36.5537)  # Changqing, Jinan


def test_a_station_is_found_supplied_watched_and_used(platform, sse):
    gcj_lng, gcj_lat = geo.wgs84_to_gcj02(*WGS84)
    with platform.client() as admin:
        station = created(admin.post("/stations", json={
            "kind": "warm_station", "name": "长清暖新驿站", "division": DIVISION, "address": "长清区大学路",
            "location": {"lng": WGS84[0], "lat": WGS84[1]}, "amenities": ["water", "charging", "heating"],
            "capacity": 20, "opening_hours": "24/7"}))
        manager = f"keeper{uuid.uuid4().hex[:6]}"
        created(admin.post("/users", json={"username": manager, "password": PASSWORD, "role": "station_manager",
                                           "scope": [station["id"]]}))
        assert ok(admin.patch(f"/stations/{station['id']}", json={"manager": manager}))["manager"] == manager

        # A rider's Amap position (GCJ-02) finds it where it is; the same numbers read as WGS-84
        # are hundreds of metres off, as GCJ-02 shifts a point.
        found = ok(admin.get("/stations", params={"near": f"{gcj_lng},{gcj_lat}", "coord_sys": "gcj02",
                                                  "radius_m": 50, "open_now": "true", "amenity": "water,heating"}))
        assert [s["id"] for s in found["items"]] == [station["id"]] and found["items"][0]["distance_m"] < 1
        misread = ok(admin.get("/stations", params={"near": f"{gcj_lng},{gcj_lat}", "radius_m": 2000}))["items"]
        assert 100 < next(s["distance_m"] for s in misread if s["id"] == station["id"]) < 1000

        unit = created(admin.post("/units", json=unit_body(DIVISION)))
        member = full_member(admin, joint_branch(admin, DIVISION, unit["id"]), unit)

    keeper = platform.token(manager, PASSWORD)
    stream = sse({"types": "station.*,notification.created"}, token=keeper)
    with platform.client(keeper) as api:
        ok(api.put(f"/stations/{station['id']}/supplies/water", json={"quantity": 12, "low_threshold": 5,
                                                                       "unit": "箱"}))
        for delta in (-4, -4, -2):  # 8, 4 (crosses below 5), 2 (still below: no second alert)
            ok(api.post(f"/stations/{station['id']}/supplies/water/adjust", json={"delta": delta, "reason": "发放"}))
        assert api.post(f"/stations/{station['id']}/supplies/water/adjust",
                        json={"delta": -3, "reason": "超发"}).status_code == 409  # never below zero
        ok(api.post(f"/stations/{station['id']}/supplies/water/adjust", json={"delta": 10, "reason": "补货"}))

    def seen(kind: str, notice: str | None = None) -> list[dict]:
        """Events of type `kind` about the station on the stream (notifications: of type `notice`)."""
        envelopes = [e["data"] for e in list(stream.events) if e["data"].get("type") == kind]
        if notice is None:
            return [env for env in envelopes if env.get("subject") == station["id"]]
        return [env for env in envelopes if env["data"]["type"] == notice and env["data"]["subject"] == station["id"]]

    stream.wait_for(lambda envelope: envelope["type"] == "station.supply_restocked")
    wait_for(lambda: seen("notification.created", "station.supply_low"), what="the manager's notification")
    assert len(seen("station.supply_low")) == 1 and seen("station.supply_low")[0]["data"]["quantity"] == 4
    assert len(seen("notification.created", "station.supply_low")) == 1
    with platform.client(keeper) as api:
        inbox = ok(api.get("/notifications"))["items"]
        assert [n["type"] for n in inbox if n["subject"] == station["id"]] == ["station.supply_low"]

    with platform.client() as admin:
        wait_for(lambda: admin.post(f"/members/{member['id']}/check-ins",
                                    json={"station_id": station["id"]}).status_code == 201,
                 what="a check-in once the member service knows the station")
        unknown = admin.post(f"/members/{member['id']}/check-ins", json={"station_id": "TO0jl"})
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["body", "station_id"]
        created(admin.post(f"/stations/{station['id']}/visits", json={"visitor": "anonymous"}))
        today = datetime.now(timezone.utc).date().isoformat()

        def used() -> int:
            figures = ok(admin.get(f"/stations/{station['id']}/utilisation", params={"from": today, "to": today}))
            return sum(day.get("total", 0) for day in figures.get("days", []))
        wait_for(lambda: used() == 2, what="the check-in and the visit in the utilisation")
