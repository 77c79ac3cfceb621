"""Unit tests of the coverage rules and counters (pure: no database, no broker)."""

import random

import pytest

from organization import domain
from organization.domain import ALL, CounterKey
from platform_contracts.codes import normalize_division_code, normalize_division_prefix
from platform_contracts.organization import UpdateOrganization, UpdateUnit
from platform_contracts.actors import Actor
from platform_contracts.errors import Forbidden, InvalidValue
from platform_contracts.problems import Rejected, parse_or_reject


def unit(**fields):
    base = {"_id": "u1", "division": "370113001002", "industry": "express", "type": "enterprise",
            "status": "active", "full_members": 0, "organization_ids": [], "standalone_organization_ids": [],
            "instructor_id": None}
    return domain.refresh_unit({**base, **fields})


def test_organization_coverage_takes_precedence_over_an_instructor():
    assert unit(organization_ids=["o1"], instructor_id="i1")["coverage"] == "organization"
    assert unit(instructor_id="i1")["coverage"] == "work"
    assert unit()["coverage"] == "none"


@pytest.mark.parametrize("full, standalone, status, expected", [
    (3, False, "active", True),
    (2, False, "active", False),
    (5, True, "active", False),
    (4, False, "deregistered", False),
])
def test_should_establish(full, standalone, status, expected):
    u = unit(full_members=full, standalone_organization_ids=["o1"] if standalone else [],
             organization_ids=["o1"] if standalone else [], status=status)
    assert u["should_establish"] is expected


def test_joint_membership_does_not_make_a_unit_standalone():
    u = domain.attach(unit(full_members=3), {"_id": "j1", "formation": "joint"})
    assert u["coverage"] == "organization" and not u["standalone"] and u["should_establish"]
    u = domain.attach(u, {"_id": "s1", "formation": "standalone"})
    assert u["standalone"] and not u["should_establish"]
    u = domain.detach(u, "s1")
    assert not u["standalone"] and u["should_establish"] and u["organization_ids"] == ["j1"]


def test_a_unit_counts_in_24_counters():
    keys = domain.counter_keys("370113001002", "express", "enterprise")
    assert len(keys) == 24 and len({k.id for k in keys}) == 24
    assert CounterKey(ALL, ALL, ALL) in keys
    assert CounterKey("3701", "express", ALL) in keys


def test_delta_of_a_coverage_change_moves_between_partitions():
    before = unit()
    after = domain.attach(dict(before), {"_id": "o1", "formation": "standalone"})
    delta = domain.counter_delta(before, after)
    district = delta[CounterKey("370113", ALL, ALL).id]
    assert district == {"units": 0, "organization_covered": 1, "work_covered": 0, "uncovered": -1,
                        "standalone_units": 1, "should_establish": 0}


def test_a_division_move_leaves_the_old_chain_and_joins_the_new():
    before = unit()
    after = unit(division="370112001")
    delta = domain.counter_delta(before, after)
    assert delta[CounterKey("370113", ALL, ALL).id]["units"] == -1
    assert delta[CounterKey("370112", ALL, ALL).id]["units"] == 1
    assert CounterKey("37", ALL, ALL).id not in delta  # same province: nothing moves there


def test_deregistered_units_count_nowhere():
    assert domain.contribution(unit(status="deregistered")) == {}


def test_incremental_counters_equal_a_recount():
    """Apply random changes one delta at a time; the totals must equal a recount."""
    rng = random.Random(7)
    units = {}
    counters = {}
    for step in range(400):
        uid = f"u{rng.randrange(40)}"
        before = units.get(uid)
        if before is None:
            after = unit(_id=uid, division=rng.choice(["370113001", "370113002001", "370112"]),
                         industry=rng.choice(["express", "food"]), type=rng.choice(["enterprise", "park"]))
        else:
            after = dict(before)
            action = rng.choice(["attach", "detach", "instructor", "members", "deregister"])
            if action == "attach":
                after = domain.attach(after, {"_id": f"o{step}", "formation": rng.choice(["standalone", "joint"])})
            elif action == "detach" and after["organization_ids"]:
                after = domain.detach(after, after["organization_ids"][0])
            elif action == "instructor":
                after = domain.refresh_unit({**after, "instructor_id": rng.choice([None, "i1"])})
            elif action == "members":
                after = domain.refresh_unit({**after, "full_members": rng.randrange(6)})
            elif action == "deregister":
                after = domain.refresh_unit({**after, "status": "deregistered"})
        for key_id, counts in domain.counter_delta(before, after).items():
            row = counters.setdefault(key_id, dict.fromkeys(domain.COUNT_FIELDS, 0))
            for field, value in counts.items():
                row[field] += value
        units[uid] = after
    assert domain.counter_corrections(domain.expected_counters(units.values()), counters) == {}
    total = counters[CounterKey(ALL, ALL, ALL).id]
    assert total["organization_covered"] + total["work_covered"] + total["uncovered"] == total["units"]


def test_corrections_are_what_to_add_and_stay_right_after_later_commands():
    zero = dict.fromkeys(domain.COUNT_FIELDS, 0)
    expected = {"a|*|*": {**zero, "units": 2}, "c|*|*": {**zero, "units": 1}}
    stored = {"a|*|*": {**zero, "units": 3}, "b|*|*": {**zero, "units": 1}, "d|*|*": dict(zero)}
    corrections = domain.counter_corrections(expected, stored)
    assert {k: v["units"] for k, v in corrections.items()} == {"a|*|*": -1, "b|*|*": -1, "c|*|*": 1}
    # A command after the snapshot moved both the facts and the counter: a unit more in "a".
    later = domain.add_counters(stored, {"a|*|*": {"units": 1}})
    assert domain.add_counters(later, corrections)["a|*|*"]["units"] == 3  # 2 recounted + the new one


def test_figures_and_rates():
    counts = {"units": 4, "organization_covered": 1, "work_covered": 2, "uncovered": 1,
              "standalone_units": 1, "should_establish": 1}
    figures = domain.figures(counts, CounterKey("370113", ALL, ALL), None)
    assert figures.organization_rate == 0.25 and figures.work_rate == 0.5 and figures.standalone_rate == 0.25
    empty = domain.figures(None, CounterKey(ALL, ALL, ALL), None)
    assert empty.units == 0 and empty.organization_rate == 0.0 and empty.division is None


def test_joint_cap_and_standalone_single_unit():
    domain.check_unit_count("joint_branch", "joint", 5, joint_cap=5)
    with pytest.raises(InvalidValue) as caught:
        domain.check_unit_count("branch", "joint", 6, joint_cap=5)
    assert caught.value.field == ("unit_ids",)
    with pytest.raises(InvalidValue):
        domain.check_unit_count("joint_branch", "area", 6, joint_cap=5)  # a joint branch by kind
    with pytest.raises(InvalidValue):
        domain.check_unit_count("branch", "standalone", 2, joint_cap=5)
    domain.check_unit_count("comprehensive_committee", "area", 40, joint_cap=5)


def test_member_categories():
    assert domain.member_category("probationary") == "probationary"
    assert domain.member_category("candidate") is None
    assert domain.member_count_field("full") == "full_members"
    assert domain.member_count_field(None) is None


# ---- contract: PATCH bodies, division codes ---------------------------------------------------

@pytest.mark.parametrize("model, field", [
    (UpdateUnit, f) for f in ("name", "type", "industry", "division", "employees", "above_scale")
] + [(UpdateOrganization, f) for f in ("name", "kind", "online")])
def test_a_patch_cannot_null_a_field_that_has_no_null(model, field):
    with pytest.raises(Rejected) as caught:
        parse_or_reject(model, {field: None})
    assert caught.value.status == 422
    assert [e["loc"] for e in caught.value.problem["errors"]] == [["body", field]]
    assert "null" in caught.value.problem["errors"][0]["msg"]


@pytest.mark.parametrize("model, field", [
    (UpdateUnit, "address"), (UpdateOrganization, "parent_id"), (UpdateOrganization, "secretary"),
    (UpdateOrganization, "star_rating"),
])
def test_a_patch_may_clear_a_nullable_field(model, field):
    assert parse_or_reject(model, {field: None}).model_dump(exclude_unset=True) == {field: None}


def test_fields_left_out_stay_out_and_the_schema_admits_no_null_where_none_is_taken():
    assert parse_or_reject(UpdateUnit, {"name": "新名"}).model_dump(exclude_unset=True) == {"name": "新名"}
    properties = UpdateUnit.model_json_schema()["properties"]
    assert properties["name"].get("type") == "string" and "default" not in properties["name"]
    assert {"type": "null"} in properties["address"]["anyOf"]


@pytest.mark.parametrize("code", ["370113００１", "３７０１１３", "370113001٠٠٢"])
def test_division_codes_take_ascii_digits_only(code):
    with pytest.raises(ValueError, match="0-9"):
        normalize_division_code(code)
    with pytest.raises(ValueError, match="0-9"):
        normalize_division_prefix(code)


@pytest.mark.parametrize("code, level", [("370113000", "street"), ("370113001000", "community"),
                                         ("370113000001", "street")])
def test_a_000_street_or_community_is_no_code(code, level):
    for normalize in (normalize_division_code, normalize_division_prefix):
        with pytest.raises(ValueError, match=f"no {level} code"):
            normalize(code)
    assert normalize_division_code("370113001002") == "370113001002"


# ---- organizations, scope --------------------------------------------------------------------

def test_the_joint_cap_names_the_field_the_caller_sent():
    with pytest.raises(InvalidValue) as caught:
        domain.check_unit_count("joint_branch", "joint", 6, joint_cap=5, field="unit_id")
    assert caught.value.field == ("unit_id",)


def test_an_organization_cannot_sit_below_itself():
    domain.check_no_cycle("o1", ["o2", "o3"])
    with pytest.raises(InvalidValue) as caught:
        domain.check_no_cycle("o1", ["o2", "o1"])
    assert caught.value.field == ("parent_id",)


def test_scope_refusals_name_the_field():
    operator = Actor.parse({"username": "op", "role": "operator", "scope": "370113001"})
    with pytest.raises(Forbidden) as caught:
        operator.ensure_division("370113", "instructor_id")
    assert caught.value.field == ("instructor_id",)
    with pytest.raises(Forbidden) as caught:
        operator.narrow_division("370113")
    assert caught.value.field == ("division",)
    operator.ensure_division("370113001002", "unit_id")


# ---- reconciliation by district ----------------------------------------------------------------

def test_levels_above_districts_are_the_sums_of_the_districts():
    rng = random.Random(11)
    units = [unit(_id=f"u{i}", division=rng.choice(["370113001", "370113002001", "370112", "370211003"]),
                  industry=rng.choice(["express", "food"]), type=rng.choice(["enterprise", "park"]),
                  instructor_id=rng.choice([None, "i1"]), full_members=rng.randrange(5)) for i in range(300)]
    everything = domain.expected_counters(units)
    districts = domain.expected_counters(units, from_length=6)  # what one district's recount gives
    assert districts == {k: v for k, v in everything.items() if len(CounterKey.parse(k).division) >= 6}
    above = {k: v for k, v in everything.items() if k not in districts}
    assert domain.counter_corrections(domain.rolled_up(districts), above) == {}
