"""Who is told of a station's events (issue 13): a supply running low reaches the station's
manager and the operators over its division; a cancelled activity reaches everyone who had
signed up. Pure rules, no I/O."""

import uuid
from datetime import datetime, timezone

from platform_contracts.actors import Actor
from platform_contracts.events import validate_event
from gateway.auth import Principal
from gateway.notifications import addressed_to, audience_query, notification_events

DIVISION = "370113001"


def principal(role: str, scope=None, username: str = "someone") -> Principal:
    return Principal(id=f"u-{username}", actor=Actor.parse({"username": username, "role": role, "scope": scope}))


def station_event(type_: str, data: dict) -> object:
    return validate_event({
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": "service-station", "type": type_,
        "time": datetime.now(timezone.utc).isoformat(), "subject": "s1", "division": DIVISION, "data": data})


def test_a_supply_running_low_tells_the_manager_and_the_districts_operators():
    low = station_event("station.supply_low", {"station_id": "s1", "item": "water", "quantity": 3,
                                               "low_threshold": 10, "unit": "bottles", "division": DIVISION,
                                               "manager": "keeper"})
    [notification] = notification_events(low)
    data = notification.data
    assert data["type"] == "station.supply_low" and data["subject"] == "s1" and notification.division == DIVISION
    audience = data["audience"]
    assert addressed_to(audience, principal("station_manager", ["s1"], username="keeper"))
    assert addressed_to(audience, principal("operator", "370113"))
    assert not addressed_to(audience, principal("operator", "370112"))
    assert not addressed_to(audience, principal("station_manager", ["s2"], username="other"))
    assert not addressed_to(audience, principal("worker", "m1"))
    assert {"audience.username": "keeper"} in audience_query(principal("station_manager", ["s1"], "keeper"))["$or"]
    restocked = station_event("station.supply_restocked", {**low.data})
    assert notification_events(restocked) == []


def test_a_cancelled_activity_tells_each_sign_up():
    cancelled = station_event("station.activity_cancelled", {
        "activity_id": "a1", "station_id": "s1", "division": DIVISION, "title": "夏送清凉",
        "starts_at": "2026-07-01T10:00:00+08:00", "ends_at": "2026-07-01T12:00:00+08:00", "capacity": 10,
        "reason": "the station is closed",
        "sign_ups": [{"sign_up_id": "u1", "member_id": "m1", "by": "w-m1"},
                     {"sign_up_id": "u2", "member_id": None, "by": "op113"}]})
    notes = notification_events(cancelled)
    assert [n.data["audience"] for n in notes] == [{"role": "worker", "member_id": "m1"}, {"username": "op113"}]
    assert addressed_to(notes[0].data["audience"], principal("worker", "m1"))
    assert not addressed_to(notes[0].data["audience"], principal("worker", "m2"))
    assert addressed_to(notes[1].data["audience"], principal("operator", "370112", username="op113"))
    assert "夏送清凉" not in notes[0].data["body"]  # ids only in texts
    assert len({n.id for n in notes}) == 2 and [n.id for n in notification_events(cancelled)] == [n.id for n in notes]


def test_an_activity_starting_soon_reminds_each_sign_up():
    reminder = station_event("station.activity_reminder", {
        "activity_id": "a2", "station_id": "s1", "division": DIVISION, "title": "冬季送温暖",
        "starts_at": "2026-12-20T10:00:00+08:00", "ends_at": "2026-12-20T12:00:00+08:00", "capacity": 10,
        "sign_ups": [{"sign_up_id": "u3", "member_id": "m1", "by": "w-m1"}]})
    notes = notification_events(reminder)
    assert [(n.data["type"], n.data["audience"]) for n in notes] == \
        [("station.activity_reminder", {"role": "worker", "member_id": "m1"})]
    assert "starts soon" in notes[0].data["body"] and "冬季送温暖" not in notes[0].data["body"]
