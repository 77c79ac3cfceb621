"""Fixtures for the member service's integration tests: a real SecantusDB, an isolated RabbitMQ
vhost, the real organization service (organizations are checked over RPC, member counts are
moved by its consumers) and the member service, each started as `python -m <service>`."""

import base64
import os
import random
import uuid
from datetime import date, timedelta

import pymongo
import pytest
from nameko.exceptions import get_module_path, registry
from nameko.standalone.rpc import ClusterRpcProxy

from platform_contracts.member import id_number_check_character
from platform_contracts.problems import Rejected
from service_kit.testing import (EventTap, ServiceProcess, credit_code, free_port, mongodb_server, rabbit_vhost,
                                  wait_for)

# Let the RPC proxy raise Rejected itself, problem document and all.
registry[get_module_path(Rejected)] = Rejected

ADMIN = {"username": "admin", "role": "admin", "scope": None}


@pytest.fixture(scope="session")
def mongodb_uri():
    with mongodb_server() as uri:
        yield uri


@pytest.fixture(scope="session")
def amqp_uri():
    with rabbit_vhost() as uri:
        yield uri


@pytest.fixture(scope="session")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def database_names():
    suffix = uuid.uuid4().hex[:8]
    return {"organization": f"organization_{suffix}", "member": f"member_{suffix}"}


@pytest.fixture(scope="session")
def services(mongodb_uri, amqp_uri, database_names, logs, member_events):
    # Both services encrypt personal data (members' ID numbers and phones, instructors' phones).
    common = {"MONGODB_URI": mongodb_uri, "AMQP_URI": amqp_uri, "HTTP_HOST": "127.0.0.1",
              "OUTBOX_POLL_SECONDS": "0.5", "EVENT_RETRY_DELAYS_SECONDS": "1", "EVENT_MAX_ATTEMPTS": "2",
              "FIELD_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
    organization_port, member_port = free_port(), free_port()
    organization = ServiceProcess("organization", {
        **common, "MONGODB_ORGANIZATION_DB": database_names["organization"], "HTTP_PORT": str(organization_port),
        "RECONCILE_INTERVAL_SECONDS": "86400",
    }, organization_port, str(logs / "organization.log"))
    member = ServiceProcess("member", {
        **common, "MONGODB_MEMBER_DB": database_names["member"], "HTTP_PORT": str(member_port),
        "TRANSFER_EXPIRY_CHECK_SECONDS": "1", "LOG_LEVEL": "DEBUG",
    }, member_port, str(logs / "member.log"))
    for service in (organization, member):
        service.start(wait=False)
    try:
        for service in (organization, member):
            wait_for(service.ready, timeout=60, what=f"{service.module} /readyz")
        yield {"organization": organization, "member": member}
    finally:
        for service in (member, organization):
            service.stop()


@pytest.fixture(scope="session")
def member_events(amqp_uri):
    """Every event the member service publishes in the session (declared before it starts)."""
    tap = EventTap(amqp_uri, "member.events")
    yield tap
    tap.close()


@pytest.fixture(scope="session")
def proxy(services, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=30) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rpc(proxy):
    return proxy.member


@pytest.fixture(scope="session")
def organizations(proxy):
    return proxy.organization


@pytest.fixture(scope="session")
def database(mongodb_uri, database_names):
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    yield client[database_names["member"]]
    client.close()


@pytest.fixture
def tap(amqp_uri, services):
    tap = EventTap(amqp_uri, "member.events")
    yield tap
    tap.close()


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
