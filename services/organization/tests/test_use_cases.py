"""The organization service's use cases (application.Commands) on a fake unit of work: the
events, the stored records and the coverage counters each command moves, without RabbitMQ
or MongoDB. The repository runs unchanged on an in-memory database; the counters are
written by the unit of work's before-commit hook, as the store writes them."""

import os

import pytest

from organization.application import Commands
from organization.migrate import seed_divisions, seed_industries
from organization.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.errors import Conflict, Forbidden, InvalidValue
from platform_contracts.organization import CreateOrganization, RegisterUnit, UpdateUnit
from platform_testing import credit_code
from service_kit.pii import FieldCipher

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
LICHENG_OPERATOR = Actor.parse({"username": "op-licheng", "role": "operator", "scope": "370112"})
STREET = "370113001"


@pytest.fixture
def commands():
    return Commands(FieldCipher(os.urandom(32)), joint_cap=3)


@pytest.fixture
def db(fake_db):
    ensure_indexes(fake_db)
    seed_divisions(fake_db)  # the districts and industries a deployment starts with
    seed_industries(fake_db)
    return fake_db


def register_unit(commands, fake_uow, actor=ADMIN, **fields):
    command = RegisterUnit(**{"credit_code": credit_code(STREET), "name": "快递站", "type": "enterprise",
                              "industry": "express", "division": STREET, **fields})
    with fake_uow("organization") as uow:
        return commands.register_unit(uow, command, actor), uow


def counts(db, division: str) -> dict:
    return (db.coverage_counters.find_one({"_id": division}) or {}).get("all", {})


def written(db) -> dict:
    return {name: list(db[name].find()) for name in db.list_collection_names()
            if name not in ("divisions", "industries") and db[name].count_documents({})}


def test_registering_a_unit_emits_it_and_moves_the_counters(commands, fake_uow, db):
    unit, uow = register_unit(commands, fake_uow)

    assert uow.event_types == ["unit.registered", "coverage.changed"]
    registered, changed = uow.events
    assert registered.subject == unit["id"] and registered.data["credit_code"] == unit["credit_code"]
    assert changed.subject == STREET and changed.data["cause"] == "unit.registered"
    assert (changed.data["before"]["units"], changed.data["after"]["units"]) == (0, 1)
    assert changed.data["after"]["uncovered"] == 1 and changed.data["after"]["organization_rate"] == 0
    for division in ("*", "37", "3701", "370113", STREET):  # every level up to the platform's
        assert counts(db, division)["units"] == 1 and counts(db, division)["uncovered"] == 1, division
    assert db.units.find_one({"_id": unit["id"]})["coverage"] == "none"
    assert [r["type"] for r in db.outbox.find()] == ["unit.registered", "coverage.changed"]


def test_a_standalone_organization_covers_its_unit_and_raises_the_rates(commands, fake_uow, db):
    unit, _ = register_unit(commands, fake_uow)
    command = CreateOrganization(name="快递站支部", kind="branch", formation="standalone", division=STREET,
                                 unit_ids=[unit["id"]])
    with fake_uow("organization") as uow:
        organization = commands.create_organization(uow, command, ADMIN)

    assert uow.event_types == ["organization.created", "coverage.changed"]
    changed = uow.events_of("coverage.changed")[0].data
    before, after = changed["before"], changed["after"]
    assert (before["organization_rate"], after["organization_rate"]) == (0, 1)
    assert (before["standalone_rate"], after["standalone_rate"]) == (0, 1)
    assert (after["organization_covered"], after["uncovered"]) == (1, 0)
    assert counts(db, "370113")["organization_covered"] == 1 and counts(db, "370113")["standalone_units"] == 1
    stored = db.units.find_one({"_id": unit["id"]})
    assert stored["coverage"] == "organization" and stored["organization_ids"] == [organization["id"]]


def test_a_unit_outside_the_operators_district_is_refused_and_nothing_is_written(commands, fake_uow, db):
    with pytest.raises(Forbidden):
        register_unit(commands, fake_uow, actor=LICHENG_OPERATOR)
    assert written(db) == {}


def test_a_credit_code_registered_twice_is_a_conflict_and_the_counters_stay(commands, fake_uow, db):
    unit, _ = register_unit(commands, fake_uow)
    before = written(db)
    with pytest.raises(Conflict):
        register_unit(commands, fake_uow, credit_code=unit["credit_code"])
    assert written(db) == before and counts(db, STREET)["units"] == 1


def test_a_unit_stored_with_an_unregistered_industry_keeps_it_but_cannot_move_to_another(commands, fake_uow, db):
    unit, _ = register_unit(commands, fake_uow)
    db.units.update_one({"_id": unit["id"]}, {"$set": {"industry": "旧行业"}})  # stored before the registry
    with fake_uow("organization") as uow:
        kept = commands.update_unit(uow, unit["id"], UpdateUnit(industry="旧行业", employees=12), ADMIN)
    assert (kept["industry"], kept["employees"]) == ("旧行业", 12)
    with pytest.raises(InvalidValue) as refused, fake_uow("organization") as uow:
        commands.update_unit(uow, unit["id"], UpdateUnit(industry="另一个未登记行业"), ADMIN)
    assert refused.value.field == ("industry",)


def test_an_import_batch_takes_each_row_on_its_own_with_one_counter_update_and_one_event_per_district(
        commands, fake_uow, db):
    taken, _ = register_unit(commands, fake_uow)

    def row(n, **fields):
        return n, RegisterUnit(**{"credit_code": credit_code(STREET), "name": f"网点{n}", "type": "enterprise",
                                  "industry": "express", "division": STREET + "001", **fields})
    rows = [row(2), row(3, division="370112001001"), row(4, credit_code=taken["credit_code"]),
            row(5, division="110101001001"), row(6, industry="nosuchindustry"), row(7)]
    rows.append(row(8, credit_code=rows[0][1].credit_code))  # the same code twice in one batch
    with fake_uow("organization") as uow:
        outcome = commands.import_units(uow, "imp1", rows, Actor.parse({"username": "op", "role": "operator",
                                                                         "scope": "3701"}))

    assert (outcome["imported"], outcome["present"]) == ([2, 3, 7], [4])
    assert {r["row"]: [(e["field"], e["problem"]) for e in r["errors"]] for r in outcome["rejected"]} == {
        5: [("division", "outside_scope")], 6: [("industry", "unknown_industry")],
        8: [("credit_code", "duplicate_in_file")]}
    assert uow.event_types == ["unit.imported", "unit.imported", "coverage.changed", "coverage.changed"]
    imported = {e.data["district"]: e.data for e in uow.events if e.type == "unit.imported"}
    assert {d: data["count"] for d, data in imported.items()} == {"370112": 1, "370113": 2}
    assert counts(db, "370113")["units"] == 3 and counts(db, "370112")["units"] == 1
    assert db.units.count_documents({}) == 4


def test_an_import_batch_rejects_rows_outside_the_operators_scope(commands, fake_uow, db):
    command = RegisterUnit(credit_code=credit_code(STREET), name="网点", type="enterprise", industry="express",
                           division=STREET + "001")
    with fake_uow("organization") as uow:
        outcome = commands.import_units(uow, "imp2", [(2, command)], LICHENG_OPERATOR)
    assert outcome["imported"] == [] and outcome["rejected"][0]["errors"][0]["problem"] == "outside_scope"
    assert uow.event_types == [] and db.units.count_documents({}) == 0
