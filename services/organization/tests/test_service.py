"""Integration tests: the organization service as a process, over real RabbitMQ and SecantusDB."""

import uuid

import pytest

from platform_contracts.problems import Rejected
from platform_testing import credit_code, metric_value, rpc_cluster, wait_for
from platform_testing.problems import fields_named, rejected
from service_kit import registry

ADMIN = {"username": "admin", "role": "admin", "scope": None}
OPERATOR = {"username": "op", "role": "operator", "scope": "370113"}


def cid() -> str:
    return uuid.uuid4().hex


def new_unit(rpc, division="370113001", **fields):
    command = {"credit_code": credit_code(division), "name": f"unit {uuid.uuid4().hex[:6]}", "type": "enterprise",
               "industry": "express", "division": division, **fields}
    return rpc.register_unit(command, actor=ADMIN, command_id=cid())


def snapshot(database) -> dict:
    return {name: database[name].count_documents({}) for name in
            ("units", "organizations", "instructors", "outbox", "commands")} | {
        "counters": sorted((d["_id"], repr({k: v for k, v in d.items() if k != "updated_at"}))
                           for d in database.coverage_counters.find())}


def test_register_and_read_a_unit(rpc, tap):
    unit = new_unit(rpc, "370113001002")
    assert unit["coverage"] == "none" and unit["should_establish"] is False and unit["status"] == "active"
    assert rpc.get_unit(unit["id"], actor=ADMIN) == unit
    registered = tap.wait_for(lambda e: e["type"] == "unit.registered" and e["subject"] == unit["id"])
    assert registered[0]["division"] == "370113001002" and registered[0]["source"] == "organization"
    changed = tap.wait_for(lambda e: e["type"] == "coverage.changed" and e["subject"] == "370113001002")
    scopes = {s["division"] for s in changed[0]["data"]["scopes"]}
    assert {"37", "3701", "370113", "370113001", "370113001002", None} <= scopes


def test_repeated_command_id_returns_the_first_result(rpc, database):
    command = {"credit_code": credit_code(), "name": "顺丰", "type": "platform_company", "industry": "express",
               "division": "370113"}
    key = cid()
    first = rpc.register_unit(command, actor=ADMIN, command_id=key)
    second = rpc.register_unit(command, actor=ADMIN, command_id=key)
    assert first == second
    assert database.units.count_documents({"credit_code": command["credit_code"]}) == 1


@pytest.mark.parametrize("bad, field", [
    ({"credit_code": "91350100M000100Y44"}, "credit_code"),
    ({"division": "370199"}, "division"),  # well-formed but not a registered district
    ({"division": "3701"}, "division"),
    ({"type": "shop"}, "type"),
    ({"employees": -1}, "employees"),
    ({"employees": "many"}, "employees"),
])
def test_bad_unit_fields_are_named_and_nothing_is_written(rpc, database, bad, field):
    before = snapshot(database)
    command = {"credit_code": credit_code(), "name": "x", "type": "enterprise", "industry": "express",
               "division": "370113", **bad}
    problem = rejected(rpc.register_unit, command, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and ("body", field) in fields_named(problem)
    assert snapshot(database) == before


def test_duplicate_credit_code_is_a_conflict(rpc, database):
    unit = new_unit(rpc)
    before = snapshot(database)
    command = {"credit_code": unit["credit_code"], "name": "copy", "type": "enterprise", "industry": "express",
               "division": "370113"}
    problem = rejected(rpc.register_unit, command, actor=ADMIN, command_id=cid())
    assert problem["status"] == 409 and ("body", "credit_code") in fields_named(problem)
    assert snapshot(database) == before


def test_coverage_follows_organizations_and_instructors(rpc):
    division = "370113005"
    units = [new_unit(rpc, division) for _ in range(3)]
    coverage = rpc.get_coverage({"division": division}, actor=ADMIN)
    assert (coverage["units"], coverage["uncovered"]) == (3, 3)

    joint = rpc.create_organization({"name": "联合支部", "kind": "joint_branch", "formation": "joint",
                                     "division": division, "unit_ids": [units[0]["id"], units[1]["id"]]},
                                    actor=ADMIN, command_id=cid())
    instructor = rpc.create_instructor({"name": "张老师", "phone": "13812345678", "division": division},
                                       actor=ADMIN, command_id=cid())
    assert instructor["phone"] == "138****5678"
    unit = rpc.assign_instructor(units[2]["id"], instructor["id"], actor=ADMIN, command_id=cid())
    assert unit["coverage"] == "work"

    coverage = rpc.get_coverage({"division": division}, actor=ADMIN)
    assert (coverage["organization_covered"], coverage["work_covered"], coverage["uncovered"]) == (2, 1, 0)
    assert coverage["organization_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert coverage["standalone_units"] == 0

    standalone = rpc.create_organization({"name": "自建支部", "kind": "branch", "formation": "standalone",
                                          "division": division, "unit_ids": [units[2]["id"]]},
                                         actor=ADMIN, command_id=cid())
    coverage = rpc.get_coverage({"division": division}, actor=ADMIN)
    assert (coverage["organization_covered"], coverage["work_covered"], coverage["standalone_units"]) == (3, 0, 1)

    rpc.dissolve_organization(joint["id"], actor=ADMIN, command_id=cid())
    coverage = rpc.get_coverage({"division": division}, actor=ADMIN)
    assert (coverage["organization_covered"], coverage["uncovered"]) == (1, 2)
    assert rpc.get_unit(units[0]["id"], actor=ADMIN)["organization_ids"] == []

    by_type = rpc.coverage_breakdown({"by": "type", "division": division}, actor=ADMIN)
    assert [(i["type"], i["units"]) for i in by_type["items"]] == [("enterprise", 3)]
    by_division = rpc.coverage_breakdown({"by": "division", "division": "370113"}, actor=ADMIN)
    assert division in {i["division"] for i in by_division["items"]}
    assert rpc.get_organization(standalone["id"], actor=ADMIN)["unit_ids"] == [units[2]["id"]]


def test_joint_cap_and_dissolved_organizations_are_refused_without_writes(rpc, database):
    division = "370113006"
    units = [new_unit(rpc, division) for _ in range(4)]
    before = snapshot(database)
    problem = rejected(rpc.create_organization, {"name": "大联合", "kind": "joint_branch", "formation": "joint",
                                                 "division": division, "unit_ids": [u["id"] for u in units]},
                       actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and ("body", "unit_ids") in fields_named(problem)
    assert snapshot(database) == before

    joint = rpc.create_organization({"name": "联合", "kind": "joint_branch", "formation": "joint",
                                     "division": division, "unit_ids": [u["id"] for u in units[:3]]},
                                    actor=ADMIN, command_id=cid())
    problem = rejected(rpc.attach_unit, joint["id"], units[3]["id"], actor=ADMIN, command_id=cid())
    assert problem["status"] == 422

    rpc.dissolve_organization(joint["id"], actor=ADMIN, command_id=cid())
    before = snapshot(database)
    problem = rejected(rpc.attach_unit, joint["id"], units[3]["id"], actor=ADMIN, command_id=cid())
    assert problem["status"] == 409 and ("path", "organization_id") in fields_named(problem)
    problem = rejected(rpc.dissolve_organization, joint["id"], actor=ADMIN, command_id=cid())
    assert problem["status"] == 409
    assert snapshot(database) == before


def test_operator_scope_is_enforced(rpc):
    mine = new_unit(rpc, "370113007")
    theirs = new_unit(rpc, "370112001")
    assert rpc.get_unit(mine["id"], actor=OPERATOR)["id"] == mine["id"]
    assert rejected(rpc.get_unit, theirs["id"], actor=OPERATOR)["status"] == 403
    listed = rpc.list_units({}, 500, None, actor=OPERATOR)["items"]
    assert listed and all(u["division"].startswith("370113") for u in listed)
    assert rejected(rpc.list_units, {"division": "3701"}, 50, None, actor=OPERATOR)["status"] == 403
    command = {"credit_code": credit_code("370112"), "name": "x", "type": "enterprise", "industry": "express",
               "division": "370112001"}
    assert rejected(rpc.register_unit, command, actor=OPERATOR, command_id=cid())["status"] == 403
    assert rejected(rpc.get_coverage, {"division": "370112"}, actor=OPERATOR)["status"] == 403
    assert rejected(rpc.reconcile_coverage, actor=OPERATOR)["status"] == 403


def test_paging_with_cursor(rpc):
    division = "370113008"
    created = {new_unit(rpc, division)["id"] for _ in range(5)}
    seen, cursor = [], None
    while True:
        page = rpc.list_units({"division": division}, 2, cursor, actor=ADMIN)
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen))
    assert rejected(rpc.list_units, {}, 501, None, actor=ADMIN)["status"] == 422


def test_member_events_move_counts_once_and_raise_alerts(rpc, member_events, tap, organization_service):
    division = "370113009"
    unit = new_unit(rpc, division)
    other = new_unit(rpc, division)
    ids = [member_events("member.registered", {"member_id": f"m{i}", "organization_id": "o", "unit_id": unit["id"],
                                               "stage": "full", "category": "full"}) for i in range(3)]
    member_events("member.registered", {"member_id": "m0", "organization_id": "o", "unit_id": unit["id"],
                                        "stage": "full", "category": "full"}, event_id=ids[0])  # redelivery
    wait_for(lambda: rpc.get_unit(unit["id"], actor=ADMIN)["full_members"] == 3, what="3 full members")
    raised = tap.wait_for(lambda e: e["type"] == "coverage.alert_raised" and e["subject"] == unit["id"])
    assert raised[0]["data"]["full_members"] == 3
    alerts = rpc.coverage_alerts(division, 50, None, actor=ADMIN)["items"]
    assert [a["id"] for a in alerts] == [unit["id"]]

    member_events("transfer.completed", {"transfer_id": "t1", "member_id": "m1", "from_organization_id": "o",
                                         "to_organization_id": "o2", "from_unit_id": unit["id"],
                                         "to_unit_id": other["id"], "category": "full"})
    tap.wait_for(lambda e: e["type"] == "coverage.alert_cleared" and e["subject"] == unit["id"])
    assert rpc.get_unit(other["id"], actor=ADMIN)["full_members"] == 1
    assert rpc.get_unit(unit["id"], actor=ADMIN)["full_members"] == 2

    member_events("member.registered", {"member_id": "m9", "organization_id": "o", "unit_id": other["id"],
                                        "stage": "candidate"})
    member_events("member.promoted", {"member_id": "m9", "organization_id": "o", "unit_id": other["id"],
                                      "from_stage": "candidate", "to_stage": "probationary"})
    wait_for(lambda: rpc.get_unit(other["id"], actor=ADMIN)["probationary_members"] == 1, what="probationary")
    text = organization_service.metrics()
    assert metric_value(text, "inbox_duplicates_total", handler="on_member_registered") >= 1
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0


def drift_shown(replica) -> dict[str, float]:
    """coverage_reconciliation_drift on a replica's /metrics, by its `repaired` label."""
    text = replica.metrics()
    return {repaired: metric_value(text, "coverage_reconciliation_drift", repaired=repaired)
            for repaired in ("true", "false")}


def test_reconciliation_repairs_drift(rpc, database, organization_service):
    division = "370113010"
    new_unit(rpc, division)
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0
    database.coverage_counters.update_one({"_id": division}, {"$inc": {"all.units": 5}})
    report = rpc.reconcile_coverage(actor=ADMIN)
    assert report["drifted_counters"] == 1 and report["repaired"] is True
    wait_for(lambda: drift_shown(organization_service) == {"true": 1, "false": 0}, timeout=10, what="drift shown")
    assert rpc.get_coverage({"division": division}, actor=ADMIN)["units"] == 1
    assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 0
    wait_for(lambda: drift_shown(organization_service) == {"true": 0, "false": 0}, timeout=10, what="drift cleared")


def test_poison_event_is_dead_lettered_and_replayable(rpc, member_events, amqp_uri):
    # A member.registered without the fields the catalogue requires cannot be applied.
    from kombu import Connection, Exchange, Producer

    with Connection(amqp_uri) as connection:
        Producer(connection.default_channel, exchange=Exchange("member.events", "topic", durable=True)).publish(
            '{"type": "member.registered", "source": "member"}', routing_key="member.registered",
            content_type="application/json", message_id="poison-1")
    letters = wait_for(lambda: [d for d in rpc.list_dead_letters(100, actor=ADMIN)["items"]
                                if d["message_id"] == "poison-1"], what="dead letter")
    assert "invalid event" in letters[0]["error"]
    assert letters[0]["queue"] == "evt-member-member.registered--organization.on_member_registered"
    assert rpc.replay_dead_letters(["poison-1"], actor=ADMIN) == {"replayed": 1}
    # Replayed, it fails the same way and comes back: nothing is lost on the way.
    wait_for(lambda: [d for d in rpc.list_dead_letters(100, actor=ADMIN)["items"]
                      if d["message_id"] == "poison-1"], what="dead letter again")


def test_metrics_and_health(organization_service):
    text = organization_service.metrics()
    for name in ("service_entrypoint_requests_total", "outbox_pending_events", "coverage_organization_ratio",
                 "dead_letter_queue_messages"):
        assert name in text
    assert metric_value(text, "service_entrypoint_requests_total", entrypoint="register_unit", outcome="success") > 0


def test_bulk_registration_is_all_or_nothing(rpc, database):
    division = "370113011"
    batch = [{"credit_code": credit_code(division), "name": f"台账{i}", "type": "market", "industry": "retail",
              "division": f"{division}{i % 4 + 1:03d}"} for i in range(50)]
    before = snapshot(database)
    bad = [*batch[:10], {**batch[10], "type": "shop"}, *batch[11:]]
    problem = rejected(rpc.register_units, bad, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and ("body", "units", 10, "type") in fields_named(problem)
    assert snapshot(database) == before

    result = rpc.register_units(batch, actor=ADMIN, command_id=cid())
    assert len(result["items"]) == 50
    assert rpc.get_coverage({"division": division, "type": "market"}, actor=ADMIN)["units"] == 50

    before = snapshot(database)
    again = [{**batch[3], "name": "重复"}, {"credit_code": credit_code(division), "name": "新", "type": "market",
                                          "industry": "retail", "division": division}]
    problem = rejected(rpc.register_units, again, actor=ADMIN, command_id=cid())
    assert problem["status"] == 409 and ("body", "units", 0, "credit_code") in fields_named(problem)
    assert snapshot(database) == before
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0


def test_concurrent_commands_commit_together_and_a_bad_one_fails_alone(rpc, database, organization_service):
    division = "370113012"
    before = metric_value(organization_service.metrics(), "store_commands_per_transaction_count")
    taken = new_unit(rpc, division)["credit_code"]
    bodies = [{"credit_code": credit_code(division), "name": f"并发{i}", "type": "enterprise",
               "industry": "express", "division": division} for i in range(24)]
    bodies[7]["credit_code"] = taken  # this one must fail, and only this one
    replies = [rpc.register_unit.call_async(body, actor=ADMIN, command_id=cid()) for body in bodies]
    outcomes = []
    for reply in replies:
        try:
            outcomes.append(reply.result()["id"])
        except Rejected as rejection:
            outcomes.append(rejection.status)
    assert outcomes[7] == 409
    assert all(isinstance(o, str) for i, o in enumerate(outcomes) if i != 7)
    assert rpc.get_coverage({"division": division}, actor=ADMIN)["units"] == 24
    assert database.units.count_documents({"division": division}) == 24
    transactions = metric_value(organization_service.metrics(), "store_commands_per_transaction_count") - before
    # One transaction per command would be 25 (the first unit, then 24); fewer: some were grouped.
    assert transactions < 25, "no two commands shared a transaction"
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0


# ---- PATCH, division codes ---------------------------------------------------------------------

@pytest.mark.parametrize("field", ["name", "type", "industry", "division", "employees", "above_scale"])
def test_a_null_for_a_unit_field_that_cannot_be_cleared_is_refused(rpc, database, field):
    unit = new_unit(rpc, "370113013", address="经十路1号")
    before = snapshot(database)
    problem = rejected(rpc.update_unit, unit["id"], {field: None}, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", field)}
    assert snapshot(database) == before
    cleared = rpc.update_unit(unit["id"], {"address": None}, actor=ADMIN, command_id=cid())
    assert cleared["address"] is None and cleared["name"] == unit["name"]


def test_a_null_for_an_organization_field_that_cannot_be_cleared_is_refused(rpc, database):
    organization = rpc.create_organization({"name": "支部", "kind": "branch", "formation": "area",
                                            "division": "370113013", "secretary": "王书记", "star_rating": 3},
                                           actor=ADMIN, command_id=cid())
    before = snapshot(database)
    for field in ("name", "kind", "online"):
        problem = rejected(rpc.update_organization, organization["id"], {field: None}, actor=ADMIN, command_id=cid())
        assert problem["status"] == 422 and fields_named(problem) == {("body", field)}
    assert snapshot(database) == before
    cleared = rpc.update_organization(organization["id"], {"secretary": None, "star_rating": None},
                                      actor=ADMIN, command_id=cid())
    assert (cleared["secretary"], cleared["star_rating"], cleared["name"]) == (None, None, "支部")


@pytest.mark.parametrize("division", ["370113００１", "370113000", "370113001000"])
def test_division_codes_must_be_real_ascii_codes(rpc, database, division):
    before = snapshot(database)
    command = {"credit_code": credit_code(), "name": "x", "type": "enterprise", "industry": "express",
               "division": division}
    problem = rejected(rpc.register_unit, command, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and ("body", "division") in fields_named(problem)
    problem = rejected(rpc.list_units, {"division": division}, 50, None, actor=ADMIN)
    assert problem["status"] == 422 and ("query", "division") in fields_named(problem)
    assert snapshot(database) == before


# ---- scope ---------------------------------------------------------------------------------------

STREET_OPERATOR = {"username": "street-op", "role": "operator", "scope": "370113001"}


def test_an_instructor_outside_the_callers_scope_cannot_be_assigned(rpc, database):
    unit = new_unit(rpc, "370113001003")
    district_instructor = rpc.create_instructor({"name": "区指导员", "phone": "13812340000", "division": "370113"},
                                                actor=ADMIN, command_id=cid())
    before = snapshot(database)
    problem = rejected(rpc.assign_instructor, unit["id"], district_instructor["id"], actor=STREET_OPERATOR,
                       command_id=cid())
    assert problem["status"] == 403 and fields_named(problem) == {("body", "instructor_id")}
    assert snapshot(database) == before
    mine = rpc.create_instructor({"name": "街道指导员", "phone": "13812340001", "division": "370113001"},
                                 actor=STREET_OPERATOR, command_id=cid())
    assert rpc.assign_instructor(unit["id"], mine["id"], actor=STREET_OPERATOR, command_id=cid())["coverage"] == "work"


def test_a_parent_organization_must_exist_be_active_and_in_scope(rpc, database):
    district = rpc.create_organization({"name": "区综合党委", "kind": "comprehensive_committee", "formation": "area",
                                        "division": "370113"}, actor=ADMIN, command_id=cid())
    dissolved = rpc.create_organization({"name": "旧党委", "kind": "committee", "formation": "area",
                                         "division": "370113001"}, actor=ADMIN, command_id=cid())
    rpc.dissolve_organization(dissolved["id"], actor=ADMIN, command_id=cid())
    body = {"name": "街道支部", "kind": "branch", "formation": "area", "division": "370113001"}
    before = snapshot(database)
    for parent_id, status in ((district["id"], 403), (dissolved["id"], 409), ("nosuchorganization", 422)):
        problem = rejected(rpc.create_organization, {**body, "parent_id": parent_id}, actor=STREET_OPERATOR,
                           command_id=cid())
        assert problem["status"] == status and fields_named(problem) == {("body", "parent_id")}, problem
    assert snapshot(database) == before

    child = rpc.create_organization(body, actor=STREET_OPERATOR, command_id=cid())
    before = snapshot(database)
    for parent_id, status in ((district["id"], 403), (dissolved["id"], 409)):
        problem = rejected(rpc.update_organization, child["id"], {"parent_id": parent_id}, actor=STREET_OPERATOR,
                           command_id=cid())
        assert problem["status"] == status and fields_named(problem) == {("body", "parent_id")}, problem
    assert snapshot(database) == before
    assert rpc.update_organization(child["id"], {"parent_id": district["id"]}, actor=ADMIN,
                                   command_id=cid())["parent_id"] == district["id"]
    problem = rejected(rpc.update_organization, district["id"], {"parent_id": child["id"]}, actor=ADMIN,
                       command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "parent_id")}


def test_scope_refusals_name_the_field_that_led_there(rpc):
    theirs = new_unit(rpc, "370112002")
    organization = rpc.create_organization({"name": "历城支部", "kind": "branch", "formation": "area",
                                            "division": "370112002"}, actor=ADMIN, command_id=cid())
    command = {"credit_code": credit_code("370112"), "name": "x", "type": "enterprise", "industry": "express",
               "division": "370112002"}
    for problem, loc in (
        (rejected(rpc.get_unit, theirs["id"], actor=OPERATOR), ("path", "unit_id")),
        (rejected(rpc.update_unit, theirs["id"], {"name": "y"}, actor=OPERATOR, command_id=cid()), ("path", "unit_id")),
        (rejected(rpc.list_units, {"division": "370112"}, 50, None, actor=OPERATOR), ("query", "division")),
        (rejected(rpc.get_coverage, {"division": "370112"}, actor=OPERATOR), ("query", "division")),
        (rejected(rpc.register_unit, command, actor=OPERATOR, command_id=cid()), ("body", "division")),
        (rejected(rpc.register_units, [command], actor=OPERATOR, command_id=cid()), ("body", "units", 0, "division")),
        (rejected(rpc.get_organization, organization["id"], actor=OPERATOR), ("path", "organization_id")),
    ):
        assert problem["status"] == 403 and fields_named(problem) == {loc}, problem


def test_an_operator_cannot_detach_a_unit_of_another_district_from_a_joint_organization(rpc):
    """A joint organization of their district covers a unit of the next district too: only
    that district's side may take the unit's coverage away."""
    mine, theirs = new_unit(rpc, "370113017"), new_unit(rpc, "370112017")
    joint = rpc.create_organization({"name": "跨区联合支部", "kind": "joint_branch", "formation": "joint",
                                     "division": "370113017", "unit_ids": [mine["id"], theirs["id"]]},
                                    actor=ADMIN, command_id=cid())
    problem = rejected(rpc.detach_unit, joint["id"], theirs["id"], actor=OPERATOR, command_id=cid())
    assert problem["status"] == 403 and fields_named(problem) == {("path", "unit_id")}
    assert rpc.get_unit(theirs["id"], actor=ADMIN)["coverage"] == "organization"
    assert rpc.detach_unit(joint["id"], mine["id"], actor=OPERATOR, command_id=cid())["unit_ids"] == [theirs["id"]]


def test_the_joint_cap_on_attach_names_unit_id(rpc):
    division = "370113014"
    units = [new_unit(rpc, division) for _ in range(4)]
    joint = rpc.create_organization({"name": "联合", "kind": "joint_branch", "formation": "joint",
                                     "division": division, "unit_ids": [u["id"] for u in units[:3]]},
                                    actor=ADMIN, command_id=cid())
    problem = rejected(rpc.attach_unit, joint["id"], units[3]["id"], actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "unit_id")}
    branch = rpc.create_organization({"name": "片区", "kind": "branch", "formation": "area", "division": division,
                                      "unit_ids": [u["id"] for u in units]}, actor=ADMIN, command_id=cid())
    problem = rejected(rpc.update_organization, branch["id"], {"kind": "joint_branch"}, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "kind")}


# ---- deregistered units, dissolved organizations -------------------------------------------------

def test_a_deregistered_unit_cannot_be_edited_and_is_listed_on_request(rpc, database):
    division = "370113015"
    unit = new_unit(rpc, division)
    active = new_unit(rpc, division)
    rpc.deregister_unit(unit["id"], actor=ADMIN, command_id=cid())
    before = snapshot(database)
    problem = rejected(rpc.update_unit, unit["id"], {"name": "改名"}, actor=ADMIN, command_id=cid())
    assert problem["status"] == 409 and fields_named(problem) == {("path", "unit_id")} and unit["id"] in problem["detail"]
    assert snapshot(database) == before

    def listed(**filters):
        return [u["id"] for u in rpc.list_units({"division": division, **filters}, 50, None, actor=ADMIN)["items"]]

    assert listed() == [active["id"]] == listed(status="active")
    assert listed(status="deregistered") == [unit["id"]]
    assert rejected(rpc.list_units, {"status": "gone"}, 50, None, actor=ADMIN)["status"] == 422


def test_a_dissolved_organization_keeps_its_units_only_on_record(rpc):
    division = "370113016"
    units = [new_unit(rpc, division) for _ in range(2)]
    joint = rpc.create_organization({"name": "联合", "kind": "joint_branch", "formation": "joint",
                                     "division": division, "unit_ids": [u["id"] for u in units]},
                                    actor=ADMIN, command_id=cid())
    dissolved = rpc.dissolve_organization(joint["id"], actor=ADMIN, command_id=cid())
    assert dissolved["unit_ids"] == [] and sorted(dissolved["former_unit_ids"]) == sorted(u["id"] for u in units)
    assert rpc.get_organization(joint["id"], actor=ADMIN) == dissolved
    assert all(rpc.get_unit(u["id"], actor=ADMIN)["organization_ids"] == [] for u in units)
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_units"] == 0


def test_a_registered_division_is_listed_by_its_code(rpc):
    registered = rpc.register_division({"code": "370199", "name": "测试区"}, actor=ADMIN, command_id=cid())
    assert registered == {"code": "370199", "name": "测试区", "level": "district"}
    assert registered in rpc.list_divisions(actor=ADMIN)["items"]


# ---- industries ----------------------------------------------------------------------------------

def test_free_text_industry_is_refused_so_counter_documents_stay_bounded(rpc, database):
    """Each industry a unit names adds entries to six counter documents rewritten whole on every
    command: an unregistered one is refused, naming the field, before any counter moves."""
    unregistered = f"made-up-{uuid.uuid4().hex[:8]}"
    unit = new_unit(rpc, "370113013")
    before = snapshot(database)
    command = {"credit_code": credit_code(), "name": "x", "type": "enterprise", "industry": unregistered,
               "division": "370113013"}
    problem = rejected(rpc.register_unit, command, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "industry")}
    valid = {**command, "credit_code": credit_code(), "industry": "express"}
    problem = rejected(rpc.register_units, [valid, command], actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "units", 1, "industry")}
    problem = rejected(rpc.update_unit, unit["id"], {"industry": unregistered}, actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "industry")}
    assert snapshot(database) == before
    assert not any(unregistered in repr(d) for d in database.coverage_counters.find())


def test_registered_industries_are_listed_and_units_may_name_them(rpc):
    listed = {i["code"]: i for i in rpc.list_industries(actor=OPERATOR)["items"]}
    assert listed["express"] == {"code": "express", "name": "快递", "gb4754": "6020"}  # seeded
    code = f"drones-{uuid.uuid4().hex[:6]}"
    assert rejected(rpc.register_industry, {"code": code, "name": "无人机配送", "gb4754": "6090"},
                    actor=OPERATOR, command_id=cid())["status"] == 403
    problem = rejected(rpc.register_industry, {"code": code, "name": "无人机配送", "gb4754": "60-90"},
                       actor=ADMIN, command_id=cid())
    assert problem["status"] == 422 and fields_named(problem) == {("body", "gb4754")}
    registered = rpc.register_industry({"code": code, "name": "无人机配送", "gb4754": "6090"}, actor=ADMIN,
                                       command_id=cid())
    assert registered == {"code": code, "name": "无人机配送", "gb4754": "6090"}
    assert registered in rpc.list_industries(actor=ADMIN)["items"]
    unit = new_unit(rpc, "370113013", industry=code)
    assert rpc.get_coverage({"division": "370113013", "industry": code}, actor=ADMIN)["units"] == 1
    changed = rpc.update_unit(unit["id"], {"industry": "logistics"}, actor=ADMIN, command_id=cid())
    assert changed["industry"] == "logistics"


def test_migrate_registers_the_industries_stored_units_already_name(database):
    from organization import migrate

    legacy = f"legacy-{uuid.uuid4().hex[:8]}"
    database.units.insert_one({"_id": legacy, "industry": legacy, "division": "370113", "status": "deregistered"})
    database.migrations.delete_one({"_id": migrate.INDUSTRIES_IN_USE_REGISTERED})
    try:
        assert migrate.register_industries_in_use(database) == 1
        assert database.industries.find_one({"_id": legacy}) == {"_id": legacy, "name": legacy, "gb4754": None}
        assert migrate.register_industries_in_use(database) == 0  # once: done
    finally:
        database.units.delete_one({"_id": legacy})


# ---- instructors' phones -------------------------------------------------------------------------

def test_instructor_phones_are_encrypted_at_rest(rpc, database, field_encryption_key):
    from service_kit.pii import FieldCipher, parse_key

    instructor = rpc.create_instructor({"name": "李指导员", "phone": "13955556666", "division": "370113"},
                                       actor=ADMIN, command_id=cid())
    assert instructor["phone"] == "139****6666"
    stored = database.instructors.find_one({"_id": instructor["id"]})
    assert "13955556666" not in repr(stored) and "phone" not in stored
    cipher = FieldCipher(parse_key(field_encryption_key))
    assert cipher.decrypt(stored["phone_encrypted"], f"instructor:{instructor['id']}:phone") == "13955556666"
    assert rpc.get_instructor(instructor["id"], actor=ADMIN)["phone"] == "139****6666"
    listed = rpc.list_instructors({"division": "370113"}, 500, None, actor=ADMIN)["items"]
    assert [i for i in listed if i["id"] == instructor["id"]] == [rpc.get_instructor(instructor["id"], actor=ADMIN)]


def test_migrate_encrypts_plaintext_phones_clears_dissolved_unit_ids_and_places_counters(rpc, database, service_env):
    import subprocess
    import sys
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    legacy = f"legacy-{uuid.uuid4().hex[:8]}"
    database.instructors.insert_one({"_id": legacy, "name": "老指导员", "phone": "13700001111",
                                     "division": "370113", "unit_ids": [], "created_at": now})
    assert rpc.get_instructor(legacy, actor=ADMIN)["phone"] == "137****1111"  # masked even before migration
    old = f"legacy-{uuid.uuid4().hex[:8]}"
    database.organizations.insert_one({"_id": old, "name": "旧支部", "kind": "joint_branch", "formation": "joint",
                                       "division": "370113", "parent_id": None, "unit_ids": ["u-a", "u-b"],
                                       "secretary": None, "established_on": "2020-01-01", "online": False,
                                       "star_rating": None, "status": "dissolved", "dissolved_on": "2024-01-01",
                                       "created_at": now, "updated_at": now})
    # A counter document as earlier versions kept it: its place in the tree on itself, indexed.
    database.coverage_counters.insert_one({"_id": "370113099", "parent": "370113", "level": 9,
                                           "all": {"units": 2, "uncovered": 2}, "updated_at": now})
    database.coverage_counters.create_index("parent")
    for _ in range(2):  # a second run (another replica starting) changes nothing more
        result = subprocess.run([sys.executable, *registry.entry("organization").argv, "migrate"], env={
            **service_env, "PATH": "/usr/bin:/bin", "HTTP_PORT": "0"}, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
    stored = database.instructors.find_one({"_id": legacy})
    assert "13700001111" not in repr(stored)
    assert rpc.get_instructor(legacy, actor=ADMIN)["phone"] == "137****1111"
    organization = rpc.get_organization(old, actor=ADMIN)
    assert (organization["unit_ids"], organization["former_unit_ids"]) == ([], ["u-a", "u-b"])
    assert database.coverage_tree.find_one({"_id": "370113099"}) == {"_id": "370113099", "parent": "370113",
                                                                      "level": 9}
    assert "parent_1" not in database.coverage_counters.index_information()
    streets = rpc.coverage_breakdown({"by": "division", "division": "370113"}, actor=ADMIN)
    try:
        assert "370113099" in {row["division"] for row in streets["items"]}
    finally:
        database.coverage_counters.delete_one({"_id": "370113099"})
        database.coverage_tree.delete_one({"_id": "370113099"})


def test_the_service_does_not_start_without_its_key(service_env, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in service_env.items() if k != "FIELD_ENCRYPTION_KEY"}
    result = subprocess.run([sys.executable, *registry.entry("organization").argv, "migrate"],
                            env={**env, "PATH": "/usr/bin:/bin"},
                            capture_output=True, timeout=60)
    assert result.returncode != 0 and b"FIELD_ENCRYPTION_KEY" in result.stderr


# ---- reconciliation, district by district ---------------------------------------------------------

def test_reconciliation_goes_district_by_district_and_rolls_up(rpc, database, organization_service):
    assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 0  # a clean start
    unit = new_unit(rpc, "370112003")
    database.coverage_counters.update_one({"_id": "*"}, {"$inc": {"all.units": 7}})
    database.coverage_counters.update_one({"_id": "3701"}, {"$inc": {"type.enterprise.units": -1}})
    database.units.update_one({"_id": unit["id"]}, {"$set": {"coverage": "work"}})

    report = rpc.reconcile_coverage(actor=ADMIN, repair=False)
    assert (report["drifted_counters"], report["drifted_units"], report["repaired"]) == (2, 1, False)
    assert report["complete"] is True and report["districts"] >= 20  # every registered district
    assert 0 < report["longest_transaction_seconds"] <= report["seconds"]
    log = open(organization_service.log_path, encoding="utf-8").read()
    assert "found drift and left it (repair=false)" in log

    report = rpc.reconcile_coverage(actor=ADMIN)
    assert (report["drifted_counters"], report["drifted_units"], report["repaired"]) == (2, 1, True)
    assert rpc.get_unit(unit["id"], actor=ADMIN)["coverage"] == "none"
    total = rpc.get_coverage({}, actor=ADMIN)
    assert total["units"] == database.units.count_documents({"status": "active"})
    assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 0


def test_a_dry_run_reports_what_a_repair_repairs(rpc, database):
    """A phantom unit in every counter of a community's chain (what a doubled command leaves):
    the dry run finds it at the levels above the district too, as the repair then does."""
    new_unit(rpc, "370113018001")  # the chain's counter documents exist
    assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 0
    chain = ["*", "37", "3701", "370113", "370113018", "370113018001"]
    database.coverage_counters.update_many({"_id": {"$in": chain}}, {"$inc": {"all.units": 1, "all.uncovered": 1}})
    dry = rpc.reconcile_coverage(actor=ADMIN, repair=False)
    repaired = rpc.reconcile_coverage(actor=ADMIN)
    assert dry["drifted_counters"] == repaired["drifted_counters"] == 6
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0


def test_drift_is_repaired_exactly_while_commands_keep_coming(rpc, database, amqp_uri):
    """Registrations go on in the drifted district during the repair: the corrections are
    added, not set, so what those commands moved stays, and a recount afterwards agrees."""
    import threading

    division = "370113019001"
    for _ in range(20):
        new_unit(rpc, division)
    database.coverage_counters.update_one({"_id": "370113019"}, {"$inc": {"all.units": 3}})
    stop, registered = threading.Event(), []

    def keep_registering():
        with rpc_cluster(amqp_uri) as proxy:
            while not stop.is_set():
                registered.append(new_unit(proxy.organization, division)["id"])

    worker = threading.Thread(target=keep_registering)
    worker.start()
    try:
        wait_for(lambda: len(registered) >= 3, timeout=30, what="registrations under way")
        report = rpc.reconcile_coverage(actor=ADMIN)
        assert report["complete"] is True and report["drifted_counters"] >= 1
    finally:
        stop.set()
        worker.join(30)
    assert len(registered) >= 3
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0
    assert rpc.get_coverage({"division": division}, actor=ADMIN)["units"] == 20 + len(registered)
    assert rpc.get_coverage({"division": "370113019"}, actor=ADMIN)["units"] == 20 + len(registered)


def test_one_reconciliation_at_a_time(rpc, database):
    from datetime import datetime, timedelta, timezone

    lease = {"_id": "coverage-reconciliation"}
    database.leases.update_one(lease, {"$set": {"holder": "another-replica",
                                                "expires_at": datetime.now(timezone.utc) + timedelta(hours=1)}},
                               upsert=True)
    try:
        problem = rejected(rpc.reconcile_coverage, actor=ADMIN)
        assert problem["status"] == 409 and "running already" in problem["detail"]
    finally:
        database.leases.delete_one(lease)
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["complete"] is True


def test_the_periodic_reconciliation_runs_on_the_replica_holding_the_lease(service_env, database, start_service):
    from datetime import datetime, timedelta, timezone

    lease = {"_id": "coverage-reconciliation"}
    database.leases.replace_one(lease, {**lease, "holder": "another-replica",
                                        "expires_at": datetime.now(timezone.utc) + timedelta(hours=1)}, upsert=True)
    replica = start_service("organization", {**service_env, "RECONCILE_INTERVAL_SECONDS": "1"}, log_name="replica")
    try:
        def runs() -> float:
            return metric_value(replica.metrics(), "coverage_reconciliation_runs_total", trigger="periodic")

        def ticks() -> float:
            return metric_value(replica.metrics(), "service_entrypoint_requests_total",
                                entrypoint="reconcile_periodically", outcome="success")

        wait_for(lambda: ticks() >= 3, timeout=30, what="three timer ticks")
        assert runs() == 0  # the lease is held: none of them reconciled
        database.leases.update_one(lease, {"$set": {"expires_at": datetime.now(timezone.utc) - timedelta(seconds=1)}})
        wait_for(lambda: runs() >= 1, timeout=30, what="a periodic reconciliation")
        assert database.leases.find_one(lease)["holder"] != "another-replica"
    finally:
        replica.stop()
        database.leases.delete_one(lease)


def test_two_replicas_writing_the_same_counters_lose_no_update(rpc, database, service_env, start_service):
    """Counter documents are written back whole from what a transaction read: a replica that
    read a document another replica has since changed must conflict and retry, not overwrite."""
    from platform_testing import queue_consumers

    division = "370113031"  # a street no other test uses: the count below is exact
    replica = start_service("organization", service_env, log_name="second-replica")
    try:
        wait_for(lambda: queue_consumers(service_env["AMQP_URI"], "rpc-organization") == 2, timeout=30,
                 what="both replicas consuming commands")
        bodies = [{"credit_code": credit_code(division), "name": f"两副本{i}", "type": "enterprise",
                   "industry": "express", "division": division} for i in range(60)]
        # Competing consumers on the RPC queue: the two processes share these commands.
        replies = [rpc.register_unit.call_async(body, actor=ADMIN, command_id=cid()) for body in bodies]
        assert all(reply.result()["id"] for reply in replies)
        taken = metric_value(replica.metrics(), "service_entrypoint_duration_seconds_count", entrypoint="register_unit")
        assert 0 < taken < 60, "the two replicas did not share the commands"
    finally:
        replica.stop()
    assert database.units.count_documents({"division": division}) == 60
    assert rpc.get_coverage({"division": division}, actor=ADMIN)["units"] == 60
    assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0


def test_every_replica_reports_the_last_reconciliation_and_clears_after_a_clean_run(
        rpc, database, service_env, organization_service, start_service):
    """The drift gauge is the platform's, not the process's: whichever replica takes the
    reconciliation, both show its outcome within their gauge refresh period, a report-only
    run's drift under repaired="false" (it is still there), and both go back to 0 after a
    clean run. Only the timer's runs count as periodic."""
    from platform_testing import queue_consumers

    refresh_seconds = float(service_env["COVERAGE_GAUGE_REFRESH_SECONDS"])
    second = start_service("organization", service_env, log_name="second-replica")
    replicas = [organization_service, second]

    def runs(trigger: str) -> float:
        return sum(metric_value(r.metrics(), "coverage_reconciliation_runs_total", trigger=trigger) for r in replicas)

    def both_show(expected: dict, what: str) -> None:
        wait_for(lambda: all(drift_shown(r) == expected for r in replicas), timeout=5 * refresh_seconds + 5,
                 interval=0.2, what=f"both replicas to show {expected}: {what}")

    division = "370113020"
    try:
        wait_for(lambda: queue_consumers(service_env["AMQP_URI"], "rpc-organization") == 2, timeout=30,
                 what="both replicas taking commands (and so reconciliations)")
        new_unit(rpc, division)
        on_demand, periodic = runs("on_demand"), runs("periodic")
        assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 0
        both_show({"true": 0, "false": 0}, "a clean start")

        database.coverage_counters.update_one({"_id": division}, {"$inc": {"all.units": 2}})
        assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 1
        both_show({"true": 0, "false": 1}, "the drift a report-only run left in place")
        assert rpc.reconcile_coverage(actor=ADMIN)["drifted_counters"] == 1
        both_show({"true": 1, "false": 0}, "the drift a run repaired")
        assert rpc.reconcile_coverage(actor=ADMIN, repair=False)["drifted_counters"] == 0
        both_show({"true": 0, "false": 0}, "a clean run after the repair")

        last = database.leases.find_one({"_id": "coverage-reconciliation"})["last_run"]
        assert (last["trigger"], last["repaired"], last["drifted_counters"]) == ("on_demand", False, 0)
        assert (runs("on_demand") - on_demand, runs("periodic") - periodic) == (4, 0)
    finally:
        second.stop()


def test_a_reconciliation_places_counters_an_older_replica_left_out_of_the_tree(rpc, database):
    """During a rolling upgrade a replica older than coverage_tree creates counter documents
    without placing them; the levels above districts are recounted from the placed district
    counters, so a reconciliation places them first rather than 'repairing' the roll-up."""
    unit = new_unit(rpc, "370104001001")  # a district and street no other test uses
    left_out = ["370104", "370104001", "370104001001"]
    database.coverage_tree.delete_many({"_id": {"$in": left_out}})
    report = rpc.reconcile_coverage(actor=ADMIN, repair=False)
    assert report["complete"] and report["drifted_counters"] == 0, report
    assert {d["_id"] for d in database.coverage_tree.find({"_id": {"$in": left_out}})} == set(left_out)
    streets = rpc.coverage_breakdown({"by": "division", "division": "370104"}, actor=ADMIN)["items"]
    assert [(row["division"], row["units"]) for row in streets] == [("370104001", 1)]
    assert unit["division"] == "370104001001"


@pytest.mark.parametrize("by", ["type", "industry"])
def test_a_breakdown_of_a_division_with_nothing_counted_is_empty_not_a_server_error(rpc, by):
    # Found by the OpenAPI fuzz test: a division with no counter document yet failed with a KeyError (502).
    assert rpc.coverage_breakdown({"by": by, "division": "650102"}, actor=ADMIN)["items"] == []
