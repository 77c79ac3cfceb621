"""Fixtures of the member service's integration tests: the real organization service
(organizations are checked over RPC, member counts are moved by its consumers) and the member
service, both started from the registry as production starts them, and the data they are
given. SecantusDB, the vhost, the RPC proxy and event taps come from the test kit's plugin
(platform_testing)."""

import random
import uuid
from datetime import date, timedelta

import pymongo
import pytest

from platform_contracts.member import id_number_check_character
from platform_testing import EventTap, credit_code, wait_for
from platform_testing.plugin import own_vhost_and_services

# Services of this folder's own, on a vhost and databases no other test folder's services share.
amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()

ADMIN = {"username": "admin", "role": "admin", "scope": None}


@pytest.fixture(scope="session")
def services(start_session_service, member_events):
    organization = start_session_service("organization", {"RECONCILE_INTERVAL_SECONDS": "86400"}, wait=False)
    member = start_session_service("member", {"TRANSFER_EXPIRY_CHECK_SECONDS": "1", "LOG_LEVEL": "DEBUG"},
                                   wait=False)
    # Check-ins name stations the member service knows from the service-station service's events.
    station = start_session_service("service-station", wait=False)
    for service in (organization, member, station):
        service.wait_ready()
    return {"organization": organization, "member": member, "service-station": station}


@pytest.fixture(scope="session")
def member_events(amqp_uri):
    """Every event the member service publishes in the session (declared before it starts)."""
    with EventTap(amqp_uri, "member.events") as tap:
        yield tap


@pytest.fixture(scope="session")
def rpc(services, cluster_rpc):
    return cluster_rpc.member


@pytest.fixture(scope="session")
def organizations(services, cluster_rpc):
    return cluster_rpc.organization


@pytest.fixture(scope="session")
def new_station(services, cluster_rpc, database):
    """new_station(close=False) -> a station registered with the service-station service, once
    the member service's read model holds it (closed, if asked, and known closed)."""
    stations = cluster_rpc["service-station"]

    def make(close: bool = False) -> dict:
        station = stations.register_station(
            {"kind": "check_in_point", "name": "党员报到点", "division": "370113001", "address": "长清区",
             "location": {"lng": 116.75, "lat": 36.55}, "opening_hours": "24/7"}, actor=ADMIN, command_id=uuid.uuid4().hex)
        if close:
            station = stations.close_station(station["id"], actor=ADMIN, command_id=uuid.uuid4().hex)
        wait_for(lambda: (database.stations.find_one({"_id": station["id"]}) or {}).get("status") == station["status"],
                 what=f"the member service knowing station {station['id']} as {station['status']}")
        return station
    return make


@pytest.fixture(scope="session")
def active_station(new_station):
    return new_station()


@pytest.fixture(scope="session")
def database(mongodb_uri, services):
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    yield client[services["member"].database]
    client.close()


@pytest.fixture
def tap(services, event_tap):
    return event_tap("member.events")


@pytest.fixture(scope="session")
def issued():
    """Every plaintext ID number and phone the tests gave the service, for the leak checks."""
    return {"id_numbers": [], "phones": []}


@pytest.fixture
def new_id_number(issued):
    def make(division: str = "370113") -> str:
        born = date(1970, 1, 1) + timedelta(days=random.randrange(15000))
        body = f"{division}{born:%Y%m%d}{random.randrange(1000):03d}"
        number = body + id_number_check_character(body)
        issued["id_numbers"].append(number)
        return number
    return make


@pytest.fixture
def new_phone(issued):
    def make() -> str:
        phone = f"13{random.randrange(10**9):09d}"
        issued["phones"].append(phone)
        return phone
    return make


def _unit(organizations, division: str) -> dict:
    return organizations.register_unit(
        {"credit_code": credit_code(division), "name": f"unit {uuid.uuid4().hex[:6]}", "type": "platform_company",
         "industry": "delivery", "division": division}, actor=ADMIN, command_id=uuid.uuid4().hex)


def _organization(organizations, division: str, unit_ids: list[str], **fields) -> dict:
    return organizations.create_organization(
        {"name": f"支部 {uuid.uuid4().hex[:6]}", "kind": "branch", "formation": "standalone", "division": division,
         "unit_ids": unit_ids, **fields}, actor=ADMIN, command_id=uuid.uuid4().hex)


@pytest.fixture
def two_districts(organizations):
    """A unit and its standalone branch in Changqing (370113) and in Licheng (370112)."""
    sides = {}
    for side, division in (("a", "370113001"), ("b", "370112001")):
        unit = _unit(organizations, division)
        sides[side] = {"unit": unit, "organization": _organization(organizations, division, [unit["id"]])}
    return sides


@pytest.fixture(scope="session")
def dissolved_organization(organizations):
    organization = _organization(organizations, "370113002", [])
    return organizations.dissolve_organization(organization["id"], actor=ADMIN, command_id=uuid.uuid4().hex)


@pytest.fixture(scope="session")
def online_branch(organizations):
    return _organization(organizations, "370113", [], formation="area", online=True)


@pytest.fixture
def new_unit(organizations):
    return lambda division="370112001": _unit(organizations, division)


@pytest.fixture(scope="session")
def deregistered_unit(organizations):
    unit = _unit(organizations, "370113002")
    return organizations.deregister_unit(unit["id"], actor=ADMIN, command_id=uuid.uuid4().hex)
