"""Integration tests: the service-station service as a process, with the real organization
service (the division registry), over real RabbitMQ and SecantusDB, called over RPC as the
gateway calls it."""

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from platform_contracts import geo
from platform_contracts.problems import Rejected
from platform_testing import metric_value, wait_for
from platform_testing.problems import fields_named, rejected

ADMIN = {"username": "admin", "role": "admin", "scope": None}
OPERATOR = {"username": "op113", "role": "operator", "scope": "370113"}
OTHER_OPERATOR = {"username": "op112", "role": "operator", "scope": "370112"}
SQUARE = (117.0188, 36.6610)  # Quancheng Square, Jinan (WGS-84)


def cid() -> str:
    return uuid.uuid4().hex


def manager(*stations) -> dict:
    return {"username": "keeper", "role": "station_manager", "scope": [s["id"] for s in stations]}


def worker(member_id: str) -> dict:
    return {"username": f"w-{member_id}", "role": "worker", "scope": member_id}


def somewhere() -> tuple[float, float]:
    """A point of its own in Changqing, so each test's near searches find its own stations."""
    n = uuid.uuid4().int
    return round(116.70 + (n % 1000) * 0.0002, 6), round(36.50 + (n // 1000 % 1000) * 0.0002, 6)


def register(rpc, actor=ADMIN, at=None, **fields):
    lng, lat = at or somewhere()
    command = {"kind": "warm_station", "name": "长清暖新驿站", "division": "370113001", "address": "长清区大学路 1 号",
               "location": {"lng": lng, "lat": lat}, "amenities": ["water", "charging", "heating"],
               "capacity": 20, "manager": "keeper", "opening_hours": "24/7", **fields}
    return rpc.register_station(command, actor=actor, command_id=cid())


# ---- the registry ----------------------------------------------------------------------------

def test_register_read_and_find_a_station(rpc, station_events):
    lng, lat = somewhere()
    gcj = geo.wgs84_to_gcj02(lng, lat)
    station = rpc.register_station({
        "kind": "brothers_home", "name": "小哥之家", "division": "370113001", "address": "长清区",
        "location": {"lng": gcj[0], "lat": gcj[1], "coord_sys": "gcj02"}, "amenities": ["water", "microwave"],
        "opening_hours": "Mo-Su 00:00-24:00"}, actor=OPERATOR, command_id=cid())
    assert geo.distance_m(station["location"]["lng"], station["location"]["lat"], lng, lat) < 1
    assert station["open_now"] is True and station["status"] == "active" and station["version"] == 1
    assert rpc.get_station(station["id"], actor=worker("m1")) == station
    found = rpc.list_stations({"near": f"{gcj[0]},{gcj[1]}", "coord_sys": "gcj02", "radius_m": 500,
                               "open_now": True, "amenity": "water,microwave"}, 10, None, actor=worker("m1"))
    assert [s["id"] for s in found["items"]] == [station["id"]] and found["items"][0]["distance_m"] < 1
    event = station_events.wait_for(lambda e: e["type"] == "station.registered" and e["subject"] == station["id"])[0]
    assert event["division"] == "370113001" and event["data"]["location"] == station["location"]


def test_a_division_outside_the_registered_districts_is_422_naming_it(rpc):
    refusal = rejected(rpc.register_station, {
        "kind": "warm_station", "name": "x", "division": "370181001", "address": "x",
        "location": {"lng": SQUARE[0], "lat": SQUARE[1]}, "opening_hours": "24/7"}, actor=ADMIN, command_id=cid())
    assert refusal["status"] == 422 and fields_named(refusal) == {("body", "division")}


@pytest.mark.parametrize("fields, loc", [
    ({"opening_hours": "Mo-Fr 08:00-20:00;; PH nonsense"}, ["body", "opening_hours"]),
    ({"location": {"lng": 2.35, "lat": 48.85}}, ["body", "location"]),
    ({"location": {"lng": 117.0, "lat": 95}}, ["body", "location", "lat"]),
    ({"amenities": ["sauna"]}, ["body", "amenities", 0]),
    ({"status": "closed"}, ["body", "status"]),
])
def test_bad_registrations_are_422_naming_the_field_and_write_nothing(rpc, database, fields, loc):
    before = database.stations.count_documents({})
    refusal = rejected(register, rpc, **fields)
    assert refusal["status"] == 422 and tuple(loc) in fields_named(refusal), refusal
    assert database.stations.count_documents({}) == before


def test_scopes_of_operators_managers_and_workers(rpc):
    station = register(rpc)
    assert rejected(register, rpc, actor=OTHER_OPERATOR)["status"] == 403
    assert rejected(register, rpc, actor=worker("m1"))["status"] == 403
    changed = rpc.update_station(station["id"], {"opening_hours": "Mo-Fr 08:00-18:00"}, actor=manager(station),
                                 command_id=cid())
    assert changed["opening_hours"] == "Mo-Fr 08:00-18:00" and changed["version"] == 2
    refusal = rejected(rpc.update_station, station["id"], {"division": "370113002"}, actor=manager(station),
                       command_id=cid())
    assert refusal["status"] == 403 and fields_named(refusal) == {("body", "division")}
    assert rejected(rpc.update_station, station["id"], {"capacity": 1}, actor=OTHER_OPERATOR,
                    command_id=cid())["status"] == 403
    assert rejected(rpc.close_station, station["id"], actor=manager(station), command_id=cid())["status"] == 403
    assert rejected(rpc.get_station, "nope", actor=ADMIN)["status"] == 404


def test_an_idempotency_key_returns_the_first_registration(rpc, database):
    key = cid()
    command = {"kind": "warm_station", "name": "once", "division": "370113001", "address": "x",
               "location": {"lng": SQUARE[0], "lat": SQUARE[1]}, "opening_hours": "24/7"}
    first = rpc.register_station(command, actor=ADMIN, command_id=key)
    assert rpc.register_station(command, actor=ADMIN, command_id=key) == first
    assert database.stations.count_documents({"name": "once"}) == 1


# ---- closing ---------------------------------------------------------------------------------

def test_a_closed_station_leaves_near_results_at_once_and_its_sign_ups_are_cancelled(rpc, station_events):
    at = somewhere()
    station = register(rpc, at=at)
    activity = rpc.schedule_activity(station["id"], {
        "title": "冬季送温暖", "season": "winter_warmth",
        "starts_at": (datetime.now(timezone.utc) + timedelta(days=3)).isoformat(),
        "ends_at": (datetime.now(timezone.utc) + timedelta(days=3, hours=2)).isoformat(),
        "capacity": 5, "description": "姜茶和手套"}, actor=manager(station), command_id=cid())
    sign_up = rpc.sign_up(station["id"], activity["id"], {}, actor=worker("m-close"), command_id=cid())
    near = {"near": f"{at[0]},{at[1]}", "radius_m": 100}
    assert [s["id"] for s in rpc.list_stations(near, 10, None, actor=ADMIN)["items"]] == [station["id"]]
    closed = rpc.close_station(station["id"], actor=OPERATOR, command_id=cid())
    assert closed["status"] == "closed" and closed["closed_at"]
    assert rpc.list_stations(near, 10, None, actor=ADMIN)["items"] == []
    cancelled = station_events.wait_for(lambda e: e["type"] == "station.activity_cancelled"
                                        and e["data"]["activity_id"] == activity["id"])[0]
    assert cancelled["data"]["sign_ups"] == [{"sign_up_id": sign_up["id"], "member_id": "m-close",
                                              "by": "w-m-close"}]
    station_events.wait_for(lambda e: e["type"] == "station.closed" and e["subject"] == station["id"])
    assert rejected(rpc.close_station, station["id"], actor=ADMIN, command_id=cid())["status"] == 409
    assert rpc.get_activity(station["id"], activity["id"], actor=ADMIN)["status"] == "cancelled"


# ---- searching -------------------------------------------------------------------------------

def test_open_now_and_open_at_filter_on_the_stored_intervals(rpc):
    covered_until = rpc.get_calendar(actor=ADMIN)["covered_until"]
    tomorrow = datetime.now(timezone(timedelta(hours=8))).date() + timedelta(days=1)
    if tomorrow.isoformat() > covered_until:  # late in December, before next year's schedule is known
        rpc.load_calendar_year({"year": tomorrow.year, "holidays": [], "workdays": []}, actor=ADMIN,
                               command_id=cid())
    at = somewhere()
    always = register(rpc, at=at, opening_hours="24/7")
    never = register(rpc, at=(at[0] + 0.0001, at[1]), opening_hours="off")
    near = {"near": f"{at[0]},{at[1]}", "radius_m": 200}
    everything = [s["id"] for s in rpc.list_stations(near, 10, None, actor=ADMIN)["items"]]
    assert everything == [always["id"], never["id"]]
    assert [s["id"] for s in rpc.list_stations({**near, "open_now": True}, 10, None, actor=ADMIN)["items"]] == [
        always["id"]]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert [s["id"] for s in rpc.list_stations({**near, "open_at": tomorrow}, 10, None, actor=ADMIN)["items"]] == [
        always["id"]]


@pytest.mark.parametrize("filters, loc", [
    ({"near": "abc"}, ["query", "near"]),
    ({"near": "117.0,36.6", "radius_m": 0}, ["query", "radius_m"]),
    ({"near": "117.0,36.6", "coord_sys": "utm"}, ["query", "coord_sys"]),
    ({"radius_m": 100}, ["query", "radius_m"]),
    ({"open_at": "2099-01-01T00:00:00+08:00"}, ["query", "open_at"]),
    ({"open_at": "tomorrow"}, ["query", "open_at"]),
    ({"amenity": "water,sauna"}, ["query", "amenity", 1]),
    ({"division": "37011"}, ["query", "division"]),
])
def test_bad_searches_are_422_naming_the_parameter(rpc, filters, loc):
    refusal = rejected(rpc.list_stations, filters, 10, None, actor=ADMIN)
    assert refusal["status"] == 422 and tuple(loc) in fields_named(refusal), refusal


# ---- supplies --------------------------------------------------------------------------------

def crossings_of(tap, rpc, station: dict, count: int) -> list[dict]:
    """The station's supply_low and supply_restocked events, once `count` have arrived and then
    a station registered after them: the relay publishes in commit order, so one too many
    would have arrived before it."""
    def arrived():
        found = [e for e in tap.drain() if e["type"].startswith("station.supply_") and e["subject"] == station["id"]]
        return (found,) if len(found) >= count else None
    wait_for(arrived, what=f"{count} crossing(s)")
    later = register(rpc)
    tap.wait_for(lambda e: e["type"] == "station.registered" and e["subject"] == later["id"])
    return arrived()[0]

def test_supplies_alert_once_per_crossing(rpc, station_events):
    station = register(rpc)
    keeper = manager(station)
    rpc.set_supply(station["id"], "water", {"quantity": 12, "low_threshold": 10, "unit": "bottles"}, actor=keeper,
                   command_id=cid())
    for delta in (-3, -4, +10):
        rpc.adjust_supply(station["id"], "water", {"delta": delta, "reason": "发放"}, actor=keeper, command_id=cid())
    crossings = crossings_of(station_events, rpc, station, 2)
    assert [e["type"] for e in crossings] == ["station.supply_low", "station.supply_restocked"]
    assert crossings[0]["data"]["quantity"] == 9 and crossings[0]["data"]["manager"] == "keeper"
    assert rpc.get_station(station["id"], actor=ADMIN)["supplies"][0]["quantity"] == 15


def test_a_quantity_never_goes_below_zero_409_and_nothing_written(rpc, database):
    station = register(rpc)
    rpc.set_supply(station["id"], "water", {"quantity": 2, "low_threshold": 0}, actor=ADMIN, command_id=cid())
    refusal = rejected(rpc.adjust_supply, station["id"], "water", {"delta": -3, "reason": "发放"}, actor=ADMIN,
                       command_id=cid())
    assert refusal["status"] == 409 and fields_named(refusal) == {("body", "delta")}
    assert database.stations.find_one({"_id": station["id"]})["supplies"]["water"]["quantity"] == 2
    assert database.supply_adjustments.count_documents({"station_id": station["id"]}) == 0
    assert rejected(rpc.adjust_supply, station["id"], "tea", {"delta": 1, "reason": "x"}, actor=ADMIN,
                    command_id=cid())["status"] == 404
    assert fields_named(rejected(rpc.adjust_supply, station["id"], "a.b", {"delta": 1, "reason": "x"}, actor=ADMIN,
                                 command_id=cid())) == {("path", "item")}
    assert fields_named(rejected(rpc.adjust_supply, station["id"], "water", {"delta": 0, "reason": "x"},
                                 actor=ADMIN, command_id=cid())) == {("body", "delta")}


def test_concurrent_adjustments_lose_nothing_and_cross_once(rpc, database, station_events):
    """40 adjustments at once, 20 taking 3 and 20 adding 1, from 70 with a threshold of 50:
    every one is applied exactly once, and every crossing of the threshold is one event."""
    station = register(rpc)
    rpc.set_supply(station["id"], "water", {"quantity": 70, "low_threshold": 50}, actor=ADMIN, command_id=cid())
    deltas = [-3, 1] * 20
    replies = [rpc.adjust_supply.call_async(station["id"], "water", {"delta": d, "reason": "并发"}, actor=ADMIN,
                                            command_id=cid()) for d in deltas]
    results = [reply.result() for reply in replies]
    assert len(results) == 40
    assert database.stations.find_one({"_id": station["id"]})["supplies"]["water"]["quantity"] == 70 - 60 + 20
    assert sorted(a["delta"] for a in database.supply_adjustments.find({"station_id": station["id"]})) == sorted(deltas)
    # Each adjustment saw its own before (after - delta): chained, they lead from 70 to 30 with
    # none left over. Two that had read the same before (a lost update) would break the chain.
    balance = Counter()
    for a in database.supply_adjustments.find({"station_id": station["id"]}):
        balance[a["quantity_after"] - a["delta"]] += 1
        balance[a["quantity_after"]] -= 1
    assert +balance == {70: 1} and -balance == {30: 1}
    # Each adjustment crossed the threshold or not, by its own before and after; the events are
    # exactly those crossings, alternating, and the quantity ends below the threshold.
    expected = sum((a["quantity_after"] - a["delta"] < 50) != (a["quantity_after"] < 50)
                   for a in database.supply_adjustments.find({"station_id": station["id"]}))
    crossings = crossings_of(station_events, rpc, station, expected)
    assert expected % 2 == 1
    assert [e["type"] for e in crossings] == (["station.supply_low", "station.supply_restocked"] * expected)[:expected]


def test_concurrent_adjustments_never_overdraw(rpc, database):
    """30 parallel takings of 1 from 10: exactly 10 succeed, 20 are refused with 409."""
    station = register(rpc)
    rpc.set_supply(station["id"], "charging", {"quantity": 10, "low_threshold": 0}, actor=ADMIN, command_id=cid())
    replies = [rpc.adjust_supply.call_async(station["id"], "charging", {"delta": -1, "reason": "借用"}, actor=ADMIN,
                                            command_id=cid()) for _ in range(30)]
    outcomes = Counter()
    for reply in replies:
        try:
            reply.result()
            outcomes["ok"] += 1
        except Rejected as refusal:
            outcomes[refusal.status] += 1
    assert outcomes == {"ok": 10, 409: 20}
    assert database.stations.find_one({"_id": station["id"]})["supplies"]["charging"]["quantity"] == 0


# ---- visits and utilisation ------------------------------------------------------------------

def test_visits_count_in_utilisation(rpc, station_events, station):
    spot = register(rpc)
    rpc.record_visit(spot["id"], None, actor=manager(spot), command_id=cid())
    visit = rpc.record_visit(spot["id"], {"visitor": "member", "member_id": "m7"}, actor=worker("m7"),
                             command_id=cid())
    assert visit["visitor"] == "member" and visit["station_id"] == spot["id"]
    refusal = rejected(rpc.record_visit, spot["id"], {"visitor": "member"}, actor=ADMIN, command_id=cid())
    assert refusal["status"] == 422
    station_events.wait_for(lambda e: e["type"] == "station.visited" and e["data"]["visit_id"] == visit["id"])
    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    used = rpc.get_utilisation(spot["id"], {"from": today, "to": today}, actor=OPERATOR)
    assert used["total"] == 2 and used["days"][0]["visits"] == {"anonymous": 1, "member": 1}
    assert rejected(rpc.get_utilisation, spot["id"], {"from": today}, actor=OPERATOR)["status"] == 422
    assert rejected(rpc.get_utilisation, spot["id"], {"from": today, "to": today}, actor=worker("m7"))["status"] == 403
    wait_for(lambda: metric_value(station.metrics(), "station_uses_total", district="370113", kind="member") >= 1,
             what="the visit counted in the metrics")


# ---- activities ------------------------------------------------------------------------------

def test_fifty_parallel_sign_ups_for_ten_places_give_exactly_ten(rpc, database, station_events):
    spot = register(rpc)
    starts = datetime.now(timezone.utc) + timedelta(days=2)
    activity = rpc.schedule_activity(spot["id"], {
        "title": "春风送岗招聘会", "season": "spring_jobs", "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=3)).isoformat(), "capacity": 10, "description": "骑手岗位"},
        actor=manager(spot), command_id=cid())
    station_events.wait_for(lambda e: e["type"] == "station.activity_scheduled"
                            and e["data"]["activity_id"] == activity["id"])
    replies = [rpc.sign_up.call_async(spot["id"], activity["id"], {}, actor=worker(f"m{i}"), command_id=cid())
               for i in range(50)]
    outcomes = Counter()
    for reply in replies:
        try:
            reply.result()
            outcomes["signed up"] += 1
        except Rejected as refusal:
            outcomes[refusal.status] += 1
    assert outcomes == {"signed up": 10, 409: 40}
    assert database.sign_ups.count_documents({"activity_id": activity["id"], "status": "active"}) == 10
    after = rpc.get_activity(spot["id"], activity["id"], actor=ADMIN)
    assert (after["signed_up"], after["places_left"]) == (10, 0)
    mine = database.sign_ups.find_one({"activity_id": activity["id"], "status": "active"})
    rpc.cancel_sign_up(spot["id"], activity["id"], mine["_id"], actor=worker(mine["member_id"]), command_id=cid())
    assert rpc.get_activity(spot["id"], activity["id"], actor=ADMIN)["places_left"] == 1
    listed = rpc.list_activities(spot["id"], 10, None, actor=worker("m1"))["items"]
    assert [a["id"] for a in listed] == [activity["id"]]


def test_bad_activities_are_422_naming_the_field(rpc):
    spot = register(rpc)
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    refusal = rejected(rpc.schedule_activity, spot["id"], {
        "title": "x", "starts_at": past.isoformat(), "ends_at": (past + timedelta(hours=2)).isoformat(),
        "capacity": 3, "description": "d"}, actor=ADMIN, command_id=cid())
    assert refusal["status"] == 422 and fields_named(refusal) == {("body", "starts_at")}
    refusal = rejected(rpc.schedule_activity, spot["id"], {"title": "x", "season": "monsoon"}, actor=ADMIN,
                       command_id=cid())
    assert refusal["status"] == 422 and ("body", "season") in fields_named(refusal)


# ---- the holiday calendar --------------------------------------------------------------------

def test_admins_load_a_years_calendar(rpc):
    year = datetime.now().year + 5
    loaded = rpc.load_calendar_year({"year": year, "holidays": [f"{year}-01-01"], "workdays": []}, actor=ADMIN,
                                    command_id=cid())
    assert loaded["holidays"] == [f"{year}-01-01"]
    assert any(o["year"] == year for o in rpc.get_calendar(actor=ADMIN)["overrides"])
    assert rejected(rpc.load_calendar_year, {"year": year, "holidays": []}, actor=OPERATOR,
                    command_id=cid())["status"] == 403
    refusal = rejected(rpc.load_calendar_year, {"year": year, "holidays": [f"{year + 1}-01-01"]}, actor=ADMIN,
                       command_id=cid())
    assert refusal["status"] == 422 and ("body", "holidays") in fields_named(refusal)
