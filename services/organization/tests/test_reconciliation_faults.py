"""Issue 16, item 8: the reconciliation when a district fails, and when its lease lapses, on a
real SecantusDB (the service's own store and data; no service process). A district that fails
is left for the next run and the others are recounted; a run that loses its lease stops before
its next district; neither records a completed run, so the next periodic run is not put off."""

import base64
import os
import uuid

import pymongo
import pytest
from pymongo.errors import OperationFailure

from organization import reconciliation
from organization.application import Commands
from organization.migrate import prepare
from organization.repository import Repository
from platform_contracts.actors import Actor
from platform_contracts.organization import RegisterUnit
from platform_testing import credit_code
from service_kit.pii import FieldCipher
from service_kit.store import Store, utc_now

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
DISTRICTS = ("370113", "370112")


@pytest.fixture
def store(mongodb_uri):
    name = f"organization_rec_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    prepare(client[name], {"FIELD_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()})
    client.close()
    store = Store(mongodb_uri, name, "organization")
    store.ensure_indexes()
    commands = Commands(FieldCipher(os.urandom(32)), joint_cap=5)
    for district in DISTRICTS:
        for _ in range(2):
            command = RegisterUnit(credit_code=credit_code(district), name="快递站", type="enterprise",
                                   industry="express", division=f"{district}001")
            store.transaction(lambda uow: commands.register_unit(uow, command, ADMIN))
    yield store
    store.close()


def test_a_district_that_fails_is_left_for_the_next_run_and_the_others_are_recounted(store, monkeypatch):
    recount = reconciliation._recount_district

    def failing_in_changqing(repo, district):
        if district == "370113":  # as a transaction the database aborts would
            raise OperationFailure("Transaction was aborted", code=251)
        return recount(repo, district)

    monkeypatch.setattr(reconciliation, "_recount_district", failing_in_changqing)
    report = reconciliation.reconcile_leased(store, "replica-a", 60, reconciliation.PERIODIC)
    assert report["complete"] is False and report["districts_left"] == ["370113"]
    assert report["districts"] == len(Repository(store.db).reconciliation_districts()) - 1
    lease = Repository(store.db).leases().get(reconciliation.RECONCILE_LEASE)
    assert "last_run" not in lease and lease["expires_at"] <= utc_now()  # released, no run on record
    monkeypatch.setattr(reconciliation, "_recount_district", recount)
    again = reconciliation.reconcile_periodically(store, "replica-a", 600, 60)  # not put off
    assert again is not None and again["complete"] is True and again["districts_left"] == []


def test_a_run_whose_lease_lapses_stops_before_its_next_district(store, monkeypatch):
    leases = Repository(store.db).leases()
    recount = reconciliation._recount_district
    seen = []

    def lease_lost_meanwhile(repo, district):
        seen.append(district)
        if len(seen) == 1:  # a pause longer than the lease: it lapses and another replica takes it
            store.db.leases.update_one({"_id": reconciliation.RECONCILE_LEASE}, {"$set": {"expires_at": utc_now()}})
            assert leases.take(reconciliation.RECONCILE_LEASE, "replica-b", utc_now(), 60)
        return recount(repo, district)

    monkeypatch.setattr(reconciliation, "_recount_district", lease_lost_meanwhile)
    report = reconciliation.reconcile_leased(store, "replica-a", 60, reconciliation.PERIODIC)
    assert report["complete"] is False and len(seen) == 1
    lease = leases.get(reconciliation.RECONCILE_LEASE)
    assert lease["holder"] == "replica-b" and "last_run" not in lease  # replica-a overwrote nothing
    assert reconciliation.reconcile_leased(store, "replica-a", 60, reconciliation.ON_DEMAND) is None
