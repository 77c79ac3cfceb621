"""Check-ins name an existing, active station (issue 13): the member service's read model of
stations, kept from the service-station service's station.* events, on a fake unit of work."""

import os
from datetime import datetime, timezone

import pytest

from member.application import Commands
from member.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.errors import InvalidValue
from platform_contracts.events import StationEvent
from platform_contracts.member import CheckIn, RegisterMember
from service_kit.pii import FieldCipher

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
ORGANIZATION = {"id": "org-1", "division": "370113001", "status": "active"}
NOW = datetime(2026, 3, 9, 2, 0, tzinfo=timezone.utc)


def station_event(version: int, status: str = "active", station_id: str = "s1") -> StationEvent:
    return StationEvent.model_validate({
        "id": station_id, "name": "报到点", "kind": "check_in_point", "division": "370113001", "address": "x",
        "location": {"lng": 117.0, "lat": 36.6}, "location_gcj02": {"lng": 117.0, "lat": 36.6},
        "opening_hours": "24/7", "open_now": True, "amenities": [], "capacity": 0, "status": status,
        "version": version, "registered_at": NOW, "updated_at": NOW})


@pytest.fixture
def commands():
    return Commands(FieldCipher(os.urandom(32)), letter_valid_days=30)


@pytest.fixture
def member(commands, fake_uow, fake_db, new_id_number):
    ensure_indexes(fake_db)
    with fake_uow("member") as uow:
        return commands.register_member(uow, RegisterMember(name="王骑手", id_number=new_id_number(),
                                                            organization_id="org-1", occupation="rider"),
                                        ORGANIZATION, ADMIN)


def keep(commands, fake_uow, event: StationEvent) -> None:
    with fake_uow("member") as uow:
        commands.keep_station(uow, event)


def check_in(commands, fake_uow, member, station_id: str = "s1") -> dict:
    with fake_uow("member") as uow:
        return commands.check_in(uow, member["id"], CheckIn(station_id=station_id), ADMIN)


def test_a_check_in_at_an_unknown_station_is_refused_naming_it(commands, fake_uow, fake_db, member):
    with pytest.raises(InvalidValue) as refused:
        check_in(commands, fake_uow, member, "TO0jl")
    assert refused.value.field == ("station_id",) and "does not exist" in refused.value.msg
    assert fake_db.check_ins.count_documents({}) == 0


def test_a_check_in_at_a_closed_or_suspended_station_is_refused(commands, fake_uow, fake_db, member):
    keep(commands, fake_uow, station_event(1))
    assert check_in(commands, fake_uow, member)["station_id"] == "s1"
    for version, status in ((2, "suspended"), (3, "closed")):
        keep(commands, fake_uow, station_event(version, status))
        with pytest.raises(InvalidValue) as refused:
            check_in(commands, fake_uow, member)
        assert refused.value.field == ("station_id",) and status in refused.value.msg
    assert fake_db.check_ins.count_documents({}) == 1


def test_a_late_event_does_not_undo_a_newer_one(commands, fake_uow, fake_db, member):
    keep(commands, fake_uow, station_event(3, "closed"))
    keep(commands, fake_uow, station_event(1))  # station.registered, delivered late (a retry)
    keep(commands, fake_uow, station_event(2))
    assert fake_db.stations.find_one({"_id": "s1"})["status"] == "closed"
    with pytest.raises(InvalidValue):
        check_in(commands, fake_uow, member)
