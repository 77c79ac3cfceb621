"""A taken ID number answers 409, which tells that its holder is a party member: outside the
caller's scope each such answer is audited and counted, and a caller gets a few a day, then
429 for every registration, taken number or not. On a fake unit of work (the rule), then
through the running service (the 409, the 429, the audit log and the metric)."""

import os
import uuid
from datetime import timedelta

import pytest

from member.application import ID_NUMBER_CONFLICT, Commands
from member.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.errors import Conflict, TooManyRequests
from platform_contracts.member import RegisterMember
from platform_testing import metric_value
from platform_testing.problems import fields_named, rejected
from service_kit.pii import FieldCipher

CHANGQING = {"id": "org-changqing", "division": "370113001", "status": "active"}
ROOT = Actor.parse({"username": "root", "role": "admin", "scope": None})
CHANGQING_OPERATOR = Actor.parse({"username": "op-changqing", "role": "operator", "scope": "370113"})
LICHENG_OPERATOR = Actor.parse({"username": "op-licheng", "role": "operator", "scope": "370112"})
PER_DAY = 3


@pytest.fixture
def commands():
    return Commands(FieldCipher(os.urandom(32)), letter_valid_days=30, conflicts_outside_scope_per_day=PER_DAY)


@pytest.fixture
def registered(commands, fake_db, fake_uow, new_id_number):
    ensure_indexes(fake_db)
    number = new_id_number()
    command = RegisterMember(name="王骑手", id_number=number, organization_id=CHANGQING["id"], stage="probationary")
    member = fake_uow("member").run(lambda uow: commands.register_member(uow, command, CHANGQING, ROOT))
    return member, number


def screen(commands, fake_uow, number, actor, **options):
    return fake_uow("member", **options).run(lambda uow: commands.screen_id_number(uow, number, actor))


def test_a_taken_id_number_outside_the_scope_is_a_membership_oracle_no_more(commands, fake_db, fake_uow,
                                                                             registered, new_id_number):
    member, number = registered
    for _ in range(PER_DAY):
        assert isinstance(screen(commands, fake_uow, number, LICHENG_OPERATOR), Conflict)
    records = list(fake_db.audit_log.find({"action": ID_NUMBER_CONFLICT}))
    assert [(r["member_id"], r["by"], r["outcome"]) for r in records] == [
        (member["id"], "op-licheng", "revealed")] * PER_DAY
    # The allowance used up: refused, also for a number nobody holds, so the refusal tells nothing.
    assert isinstance(screen(commands, fake_uow, number, LICHENG_OPERATOR), TooManyRequests)
    assert isinstance(screen(commands, fake_uow, new_id_number("370112"), LICHENG_OPERATOR), TooManyRequests)
    assert fake_db.audit_log.count_documents({"outcome": "refused", "member_id": member["id"]}) == 1
    # A day later the allowance is back.
    later = fake_uow("member").now + timedelta(days=1, minutes=1)
    assert isinstance(screen(commands, fake_uow, number, LICHENG_OPERATOR, now=later), Conflict)


def test_a_taken_id_number_inside_the_scope_is_left_to_the_registration(commands, fake_db, fake_uow, registered):
    _, number = registered
    for actor in (CHANGQING_OPERATOR, ROOT):
        for _ in range(PER_DAY + 1):
            assert screen(commands, fake_uow, number, actor) is None
    assert fake_db.audit_log.count_documents({}) == 0


# ---- through the running service -------------------------------------------------------------

def test_the_membership_oracle_through_the_service(services, rpc, two_districts, new_id_number):
    a, b = two_districts["a"], two_districts["b"]
    number = new_id_number()
    held = rpc.register_member({"name": "王骑手", "id_number": number, "organization_id": a["organization"]["id"]},
                               actor={"username": "admin", "role": "admin", "scope": None},
                               command_id=uuid.uuid4().hex)
    prober = {"username": f"sec-{uuid.uuid4().hex[:6]}", "role": "secretary", "scope": [b["organization"]["id"]]}
    before = metric_value(services["member"].metrics(), "member_id_number_conflicts_outside_scope_total",
                          outcome="revealed")
    command = {"name": "冒名", "id_number": number, "organization_id": b["organization"]["id"]}
    for _ in range(5):  # the default allowance
        problem = rejected(rpc.register_member, command, actor=prober, command_id=uuid.uuid4().hex)
        assert problem["status"] == 409 and ("body", "id_number") in fields_named(problem)
    problem = rejected(rpc.register_member, command, actor=prober, command_id=uuid.uuid4().hex)
    assert problem["status"] == 429 and ("body", "id_number") in fields_named(problem)
    fresh = {**command, "id_number": new_id_number("370112")}
    assert rejected(rpc.register_member, fresh, actor=prober, command_id=uuid.uuid4().hex)["status"] == 429

    audit = rpc.list_audit_log({"member_id": held["id"]}, 50, None,
                               actor={"username": "admin", "role": "admin", "scope": None})["items"]
    assert [(r["action"], r["by"], r["outcome"]) for r in audit] == \
           [(ID_NUMBER_CONFLICT, prober["username"], "revealed")] * 5 + \
           [(ID_NUMBER_CONFLICT, prober["username"], "refused")]
    after = metric_value(services["member"].metrics(), "member_id_number_conflicts_outside_scope_total",
                         outcome="revealed")
    assert after - before == 5
