"""The member service's use cases (application.Commands) on a fake unit of work: the rules,
the events and what is stored, without RabbitMQ or MongoDB. The repositories run unchanged
on an in-memory database; events are validated against the contract as the store does.
(The organization service is asked before a transaction opens: here its answers are given.)"""

import os
from datetime import datetime, timedelta, timezone

import pytest

from member.application import Commands
from member.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.errors import Conflict, Forbidden
from platform_contracts.member import ApproveTransfer, RegisterMember, RequestTransfer
from service_kit.pii import FieldCipher, mask_id_number, mask_phone

CHANGQING = {"id": "org-changqing", "division": "370113001", "status": "active"}
LICHENG = {"id": "org-licheng", "division": "370112001", "status": "active"}

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
SENDER = Actor.parse({"username": "op-changqing", "role": "operator", "scope": "370113"})
RECEIVER = Actor.parse({"username": "op-licheng", "role": "operator", "scope": "370112"})


@pytest.fixture
def cipher():
    return FieldCipher(os.urandom(32))


@pytest.fixture
def commands(cipher):
    return Commands(cipher, letter_valid_days=30)


@pytest.fixture
def db(fake_db):
    ensure_indexes(fake_db)  # the unique index on the ID number's blind index, as in production
    return fake_db


def written(db) -> dict:
    """Every document in the database, by collection (an empty collection left out)."""
    return {name: list(db[name].find()) for name in db.list_collection_names() if db[name].count_documents({})}


def register(commands, fake_uow, id_number: str, phone: str | None = None, organization=CHANGQING, actor=ADMIN,
             **fields) -> dict:
    command = RegisterMember(name="王骑手", id_number=id_number, phone=phone, organization_id=organization["id"],
                             stage="probationary", occupation="rider", **fields)
    with fake_uow("member") as uow:
        return commands.register_member(uow, command, organization, actor)


# ---- registering a member --------------------------------------------------------------------

def test_registering_a_member_emits_masked_data_and_stores_it_encrypted(commands, cipher, fake_uow, db,
                                                                        new_id_number, new_phone):
    id_number, phone = new_id_number(), new_phone()
    command = RegisterMember(name="王骑手", id_number=id_number, phone=phone, organization_id=CHANGQING["id"],
                             stage="probationary", occupation="rider")
    with fake_uow("member") as uow:
        member = commands.register_member(uow, command, CHANGQING, ADMIN)

    assert (member["id_number"], member["phone"]) == (mask_id_number(id_number), mask_phone(phone))
    assert (member["division"], member["category"], member["stage"]) == ("370113001", "probationary", "probationary")
    [event] = uow.events
    assert (event.type, event.subject, event.division) == ("member.registered", member["id"], "370113001")
    assert event.data["id_number"] == mask_id_number(id_number) and event.data["phone"] == mask_phone(phone)
    assert event.data["organization_id"] == CHANGQING["id"] and event.data["category"] == "probationary"
    assert [record["type"] for record in uow.outbox] == ["member.registered"]

    stored = db.members.find_one({"_id": member["id"]})
    assert id_number not in repr(stored) and phone not in repr(stored)
    assert cipher.decrypt(stored["id_number_encrypted"], f"member:{member['id']}:id_number") == id_number
    assert cipher.decrypt(stored["phone_encrypted"], f"member:{member['id']}:phone") == phone
    assert stored["id_number_index"] == commands.id_number_index(id_number)
    assert id_number not in repr([e.data for e in uow.events]) and phone not in repr(uow.outbox)


def test_an_id_number_registered_twice_is_a_conflict_and_writes_nothing(commands, fake_uow, db, new_id_number):
    id_number = new_id_number()
    register(commands, fake_uow, id_number)
    before = written(db)
    with pytest.raises(Conflict):
        register(commands, fake_uow, id_number)
    assert written(db) == before


def test_an_operator_outside_the_division_is_refused_and_nothing_is_written(commands, fake_uow, db, new_id_number):
    with pytest.raises(Forbidden):
        register(commands, fake_uow, new_id_number(), organization=CHANGQING, actor=RECEIVER)
    assert written(db) == {}


# ---- a transfer, from request to report-in --------------------------------------------------

def step(fake_uow, work, now=None):
    """One use case in its own transaction; its result and its unit of work."""
    with fake_uow("member", now=now) as uow:
        result = work(uow)
    return result, uow


def test_a_transfer_goes_from_request_to_report_in_and_moves_the_member(commands, fake_uow, db, new_id_number):
    member = register(commands, fake_uow, new_id_number())
    worker = Actor.parse({"username": "rider", "role": "worker", "scope": member["id"]})

    transfer, uow = step(fake_uow, lambda uow: commands.request_transfer(
        uow, RequestTransfer(member_id=member["id"], to_organization_id=LICHENG["id"], reason="moved to Licheng"),
        LICHENG, worker))
    assert transfer["status"] == "requested" and uow.event_types == ["transfer.requested"]
    [requested] = uow.events
    assert (requested.division, requested.otherdivision) == ("370113001", "370112001")
    assert db.members.find_one({"_id": member["id"]})["open_transfer_id"] == transfer["id"]

    approved, uow = step(fake_uow, lambda uow: commands.approve_transfer(
        uow, transfer["id"], ApproveTransfer(letter_valid_days=10), SENDER))
    assert approved["status"] == "approved" and uow.event_types == ["transfer.approved"]
    assert approved["letter_expires_on"] is not None
    assert uow.events[0].division == "370112001"  # the receiving side acts next

    received, uow = step(fake_uow, lambda uow: commands.receive_transfer(uow, transfer["id"], RECEIVER))
    assert received["status"] == "received" and uow.event_types == ["transfer.received"]

    completed, uow = step(fake_uow, lambda uow: commands.report_in(uow, transfer["id"], worker))
    assert completed["status"] == "completed" and uow.event_types == ["transfer.completed"]
    assert uow.events[0].data["category"] == "probationary" and uow.events[0].data["stage"] == "probationary"
    assert [s["status"] for s in completed["history"]] == ["requested", "approved", "received", "completed"]

    moved = db.members.find_one({"_id": member["id"]})
    assert (moved["organization_id"], moved["division"], moved["open_transfer_id"]) == (
        LICHENG["id"], "370112001", None)
    assert [r["type"] for r in db.outbox.find()] == [
        "member.registered", "transfer.requested", "transfer.approved", "transfer.received", "transfer.completed"]


def test_a_refused_step_leaves_the_transfer_and_the_member_as_they_were(commands, fake_uow, db, new_id_number):
    member = register(commands, fake_uow, new_id_number())
    transfer, _ = step(fake_uow, lambda uow: commands.request_transfer(
        uow, RequestTransfer(member_id=member["id"], to_organization_id=LICHENG["id"], reason="moved"),
        LICHENG, SENDER))
    before = written(db)

    with pytest.raises(Forbidden):  # only the sending side approves
        step(fake_uow, lambda uow: commands.approve_transfer(uow, transfer["id"], ApproveTransfer(), RECEIVER))
    with pytest.raises(Conflict):  # nothing to receive before the letter is issued
        step(fake_uow, lambda uow: commands.receive_transfer(uow, transfer["id"], RECEIVER))
    with pytest.raises(Conflict):  # one open transfer per member
        step(fake_uow, lambda uow: commands.request_transfer(
            uow, RequestTransfer(member_id=member["id"], to_organization_id=LICHENG["id"], reason="again"),
            LICHENG, SENDER))
    assert written(db) == before


def test_a_letter_past_its_date_can_no_longer_be_received(commands, fake_uow, db, new_id_number):
    member = register(commands, fake_uow, new_id_number())
    transfer, _ = step(fake_uow, lambda uow: commands.request_transfer(
        uow, RequestTransfer(member_id=member["id"], to_organization_id=LICHENG["id"], reason="moved"),
        LICHENG, SENDER))
    approved, uow = step(fake_uow, lambda uow: commands.approve_transfer(
        uow, transfer["id"], ApproveTransfer(letter_valid_days=1), SENDER))
    later = uow.now + timedelta(days=3)

    with pytest.raises(Conflict):
        step(fake_uow, lambda uow: commands.receive_transfer(uow, transfer["id"], RECEIVER), now=later)
    expired, uow = step(fake_uow, lambda uow: commands.expire_transfer(uow, transfer["id"]), now=later)
    assert expired is True and uow.event_types == ["transfer.expired"]
    assert db.members.find_one({"_id": member["id"]})["open_transfer_id"] is None


# ---- a received letter expiring (issue 16, item 8) -------------------------------------------

def received_transfer(commands, fake_uow, new_id_number, valid_days: int = 10):
    member = register(commands, fake_uow, new_id_number())
    worker = Actor.parse({"username": "rider", "role": "worker", "scope": member["id"]})
    transfer, _ = step(fake_uow, lambda uow: commands.request_transfer(
        uow, RequestTransfer(member_id=member["id"], to_organization_id=LICHENG["id"], reason="moved"),
        LICHENG, worker))
    step(fake_uow, lambda uow: commands.approve_transfer(uow, transfer["id"], ApproveTransfer(
        letter_valid_days=valid_days), SENDER))
    received, _ = step(fake_uow, lambda uow: commands.receive_transfer(uow, transfer["id"], RECEIVER))
    return member, worker, received


def test_a_received_letter_that_expires_ends_the_transfer_and_frees_the_member(commands, fake_uow, db,
                                                                               new_id_number):
    member, worker, transfer = received_transfer(commands, fake_uow, new_id_number)
    after = datetime.fromisoformat(transfer["letter_expires_on"]) + timedelta(days=1, hours=12)
    expired, uow = step(fake_uow, lambda uow: commands.expire_transfer(uow, transfer["id"]),
                        now=after.replace(tzinfo=timezone.utc))
    assert expired is True and uow.event_types == ["transfer.expired"]
    stored = db.transfers.find_one({"_id": transfer["id"]})
    assert stored["status"] == "expired" and db.members.find_one({"_id": member["id"]})["open_transfer_id"] is None
    # The report-in that comes after the expiry is refused, and moves no one.
    with pytest.raises(Conflict):
        step(fake_uow, lambda uow: commands.report_in(uow, transfer["id"], worker), now=after.replace(tzinfo=timezone.utc))
    assert db.members.find_one({"_id": member["id"]})["organization_id"] == CHANGQING["id"]


def test_a_report_in_that_wins_the_race_with_the_expiry_is_not_undone(commands, fake_uow, db, new_id_number):
    member, worker, transfer = received_transfer(commands, fake_uow, new_id_number)
    completed, _ = step(fake_uow, lambda uow: commands.report_in(uow, transfer["id"], worker))
    assert completed["status"] == "completed"
    # The expiry timer read the transfer before the report-in committed: its own transaction
    # reads it again and leaves it (no transfer.expired, the member stays moved).
    after = datetime.fromisoformat(transfer["letter_expires_on"]) + timedelta(days=2)
    expired, uow = step(fake_uow, lambda uow: commands.expire_transfer(uow, transfer["id"]),
                        now=after.replace(tzinfo=timezone.utc))
    assert expired is False and uow.event_types == []
    assert db.members.find_one({"_id": member["id"]})["organization_id"] == LICHENG["id"]
