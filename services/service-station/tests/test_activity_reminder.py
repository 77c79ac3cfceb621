"""Issue 13: "a reminder notification before it starts". The timer finds the activities that
start within the lead time and sends `station.activity_reminder` with the open sign-ups not
reminded before, so that each person is told once, late sign-ups included; the gateway tells
each of them (services/gateway/tests/test_station_notifications.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from platform_contracts.actors import Actor
from platform_contracts.station import RegisterStation, ScheduleActivity, SignUp
from service_station.application import Commands
from service_station.domain import CHINA_TIME
from service_station.repository import Repository, ensure_indexes

MONDAY = datetime(2026, 3, 9, 10, 0, tzinfo=CHINA_TIME).astimezone(timezone.utc)
ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
WORKER = Actor.parse({"username": "rider", "role": "worker", "scope": "member-1"})
LEAD = timedelta(hours=24)


@pytest.fixture
def run(fake_uow, fake_db):
    ensure_indexes(fake_db)

    def execute(method, *args, now=MONDAY):
        with fake_uow("service-station", now=now) as uow:
            result = method(uow, *args)
        return result, uow
    return execute


def scheduled(run, commands: Commands, starts_in: timedelta) -> tuple[dict, dict]:
    station, _ = run(commands.register_station, RegisterStation.model_validate({
        "kind": "warm_station", "name": "泉城广场暖新驿站", "division": "370113001", "address": "泉城广场东侧",
        "location": {"lng": 117.0188, "lat": 36.6610}, "opening_hours": "24/7"}), ADMIN)
    activity, _ = run(commands.schedule_activity, station["id"], ScheduleActivity(
        title="夏季送清凉", season="summer_cooling", starts_at=MONDAY + starts_in,
        ends_at=MONDAY + starts_in + timedelta(hours=2), capacity=5, description="绿豆汤"), ADMIN)
    return station, activity


def test_people_signed_up_are_reminded_once_within_the_lead_time(run, fake_db):
    commands, repo = Commands(), Repository(fake_db)
    station, soon = scheduled(run, commands, timedelta(hours=20))
    _, later = scheduled(run, commands, timedelta(days=3))
    run(commands.sign_up, station["id"], soon["id"], SignUp(), WORKER)
    run(commands.sign_up, station["id"], soon["id"], SignUp(member_id="member-2"), ADMIN)

    due = repo.activities_to_remind(MONDAY, MONDAY + LEAD, 100)
    assert due == [soon["id"]]  # the one three days away waits
    sent, uow = run(commands.remind, soon["id"])
    assert sent and uow.event_types == ["station.activity_reminder"]
    data = uow.events[0].data
    assert data["activity_id"] == soon["id"] and {s["member_id"] for s in data["sign_ups"]} == {"member-1", "member-2"}

    assert repo.activities_to_remind(MONDAY, MONDAY + LEAD, 100) == []
    again, uow = run(commands.remind, soon["id"])  # a second replica, or a pass that overlapped
    assert not again and uow.event_types == []

    # Someone who signs up after the reminder went out is reminded too, alone.
    late, _ = run(commands.sign_up, station["id"], soon["id"], SignUp(member_id="member-3"), ADMIN)
    assert repo.activities_to_remind(MONDAY, MONDAY + LEAD, 100) == [soon["id"]]
    sent, uow = run(commands.remind, soon["id"])
    assert sent and [s["sign_up_id"] for s in uow.events[0].data["sign_ups"]] == [late["id"]]


def test_a_cancelled_activity_is_not_reminded(run):
    commands = Commands()
    station, activity = scheduled(run, commands, timedelta(hours=2))
    run(commands.cancel_activity, station["id"], activity["id"], "暴雨", ADMIN)
    sent, uow = run(commands.remind, activity["id"])
    assert not sent and uow.event_types == []


def test_the_running_service_reminds_each_sign_up_before_the_start(rpc, station_events):
    """Through RPC on RabbitMQ and SecantusDB: the timer (every second here) reminds a sign-up
    of an activity starting within the lead time, once."""
    from uuid import uuid4

    admin = {"username": "admin", "role": "admin", "scope": None}
    n = uuid4().int
    station = rpc.register_station({
        "kind": "warm_station", "name": "提醒驿站", "division": "370113001", "address": "长清区",
        "location": {"lng": round(116.80 + n % 1000 * 0.0001, 6), "lat": 36.55}, "opening_hours": "24/7"},
        actor=admin, command_id=uuid4().hex)
    starts = datetime.now(timezone.utc) + timedelta(hours=3)
    activity = rpc.schedule_activity(station["id"], {
        "title": "秋季助学", "season": "autumn_school_aid", "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=1)).isoformat(), "capacity": 3, "description": "助学金申请"},
        actor=admin, command_id=uuid4().hex)
    sign_up = rpc.sign_up(station["id"], activity["id"], {}, actor={"username": "w-remind", "role": "worker",
                                                                   "scope": "m-remind"}, command_id=uuid4().hex)
    reminders = station_events.wait_for(lambda e: e["type"] == "station.activity_reminder"
                                        and e["data"]["activity_id"] == activity["id"])
    assert [s["sign_up_id"] for r in reminders for s in r["data"]["sign_ups"]] == [sign_up["id"]]
