"""The test kit's fake unit of work behaves as the store's, as a use case sees it: no MongoDB,
no RabbitMQ."""

from datetime import datetime, timezone

import pytest
from pymongo import ReplaceOne, UpdateOne

from platform_testing import FakeUnitOfWork, fake_database
from service_kit.store import UnitOfWork

ATTACHED = {"organization_id": "o1", "unit_id": "u1"}


def test_it_is_the_stores_unit_of_work_without_a_session():
    uow = FakeUnitOfWork("organization")
    assert isinstance(uow, UnitOfWork) and uow.session is None
    assert uow.shared == {} and uow.before_commit == [] and uow.on_commit == [] and uow.events == []
    assert uow.now.tzinfo is not None


def test_emit_validates_against_the_contract_as_the_store_does():
    uow = FakeUnitOfWork("organization")
    event = uow.emit("organization.unit_attached", subject="o1", division="370113", data=ATTACHED)
    assert uow.events == [event] and event.source == "organization" and event.division == "370113"
    with pytest.raises(ValueError):  # data the catalogue refuses
        uow.emit("organization.unit_attached", subject="o1", data={"organization_id": "o1"})
    with pytest.raises(ValueError):  # another service's event
        FakeUnitOfWork("member").emit("organization.unit_attached", subject="o1", data=ATTACHED)


def test_commit_runs_the_hooks_writes_the_outbox_then_the_callbacks():
    db = fake_database()
    order = []
    uow = FakeUnitOfWork("organization", db, now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    uow.before_commit.append(lambda: order.append(("hook", db.outbox.count_documents({}))))
    uow.on_commit.append(lambda: order.append(("callback", db.outbox.count_documents({}))))
    uow.emit("organization.unit_attached", subject="o1", data=ATTACHED)
    records = uow.commit()
    assert order == [("hook", 0), ("callback", 1)]
    assert [r["type"] for r in records] == ["organization.unit_attached"] and uow.committed
    with pytest.raises(RuntimeError):
        uow.commit()


def test_an_exception_leaves_nothing_written():
    db = fake_database()
    db.units.insert_one({"_id": "u1", "name": "before"})
    with pytest.raises(LookupError):
        with FakeUnitOfWork("organization", db) as uow:
            uow.db.units.replace_one({"_id": "u1"}, {"_id": "u1", "name": "after"}, session=uow.session)
            uow.db.organizations.insert_one({"_id": "o1"}, session=uow.session)
            uow.emit("organization.unit_attached", subject="o1", data=ATTACHED)
            raise LookupError("refused by the rules")
    assert list(db.units.find()) == [{"_id": "u1", "name": "before"}]
    assert db.organizations.count_documents({}) == 0 and db.outbox.count_documents({}) == 0
    assert uow.events == [] and not uow.committed


def test_the_bulk_writes_the_repositories_use_run_in_memory():
    uow = FakeUnitOfWork("organization")
    uow.db.counters.bulk_write([ReplaceOne({"_id": "370113"}, {"_id": "370113", "all": {"units": 1}}, upsert=True)],
                               ordered=True, session=uow.session)
    uow.db.tree.bulk_write([UpdateOne({"_id": "370113"}, {"$setOnInsert": {"level": 6}}, upsert=True)],
                           ordered=True, session=uow.session)
    assert uow.db.counters.find_one({"_id": "370113"}, session=None)["all"] == {"units": 1}
    assert uow.db.tree.find_one({"_id": "370113"})["level"] == 6


def test_the_fixtures_share_one_database(fake_db, fake_uow):
    with fake_uow("organization") as uow:
        uow.db.units.insert_one({"_id": "u1"}, session=uow.session)
    assert fake_uow("organization").db is fake_db and fake_db.units.count_documents({}) == 1
