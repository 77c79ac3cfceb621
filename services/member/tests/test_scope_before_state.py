"""A caller's right is decided before the state of what a command names (scope matrix, issue 16
item 7): a caller who may not act is refused 403 without being told whether an organization or
unit named exists, is dissolved or deregistered, or is an online branch. Only those who may act
are told (422 naming the field). The member service and the real organization service, as in
test_service.py."""

import uuid

from platform_testing.problems import fields_named, rejected

ADMIN = {"username": "admin", "role": "admin", "scope": None}
OP_A = {"username": "op113", "role": "operator", "scope": "370113"}  # the members' district
OP_B = {"username": "op112", "role": "operator", "scope": "370112"}
MANAGER = {"username": "keeper", "role": "station_manager", "scope": ["some-station"]}
HANDLER = {"username": "clerk", "role": "handler", "scope": ["some-department"]}
FULL = {"stage": "full", "joined_on": "2015-07-01", "stage_on": "2016-07-01"}


def cid() -> str:
    return uuid.uuid4().hex


def secretary(*organization_ids) -> dict:
    return {"username": f"sec-{uuid.uuid4().hex[:4]}", "role": "secretary", "scope": list(organization_ids)}


def worker(member: dict) -> dict:
    return {"username": f"w-{member['id'][-6:]}", "role": "worker", "scope": member["id"]}


def register(rpc, new_id_number, organization_id, **fields):
    return rpc.register_member({"name": "王骑手", "id_number": new_id_number(), "organization_id": organization_id,
                                "occupation": "rider", **fields}, actor=ADMIN, command_id=cid())


def snapshot(database) -> dict:
    return {name: database[name].count_documents({}) for name in ("members", "transfers", "outbox", "audit_log")}


def refused_403(call, *args, **kwargs) -> dict:
    problem = rejected(call, *args, **kwargs)
    assert problem["status"] == 403, problem
    return problem


def told_422(call, *args, field, said, **kwargs) -> None:
    problem = rejected(call, *args, **kwargs)
    assert problem["status"] == 422 and ("body", field) in fields_named(problem) and said in problem["detail"], problem


# ---- POST /transfers/{id}/report-in ------------------------------------------------------------

def test_report_in_tells_the_receiving_sides_state_only_to_the_member_and_the_receiving_side(
        rpc, organizations, database, two_districts, new_unit, new_id_number):
    """A received transfer whose receiving organization was dissolved, and one whose unit was
    deregistered, since: the sending side (its operator, its secretary), another district's
    operator, another organization's secretary and another worker are refused (403) as they are
    on GET of the transfer, not told the destination and its state (422 naming
    to_organization_id / to_unit_id). The member and the receiving side are told."""
    a, b = two_districts["a"], two_districts["b"]
    receiving = organizations.create_organization(
        {"name": f"支部 {uuid.uuid4().hex[:6]}", "kind": "branch", "formation": "standalone", "division": "370112001",
         "unit_ids": []}, actor=ADMIN, command_id=cid())
    unit = new_unit("370112001")
    stopped = {}
    for case, to_organization, to_unit in (("organization", receiving["id"], None),
                                          ("unit", b["organization"]["id"], unit["id"])):
        member = register(rpc, new_id_number, a["organization"]["id"], **FULL)
        transfer = rpc.request_transfer({"member_id": member["id"], "to_organization_id": to_organization,
                                         "to_unit_id": to_unit, "reason": "工作调动"}, actor=ADMIN, command_id=cid())
        rpc.approve_transfer(transfer["id"], {}, actor=ADMIN, command_id=cid())
        rpc.receive_transfer(transfer["id"], actor=ADMIN, command_id=cid())
        stopped[case] = (transfer, member)
    organizations.dissolve_organization(receiving["id"], actor=ADMIN, command_id=cid())
    organizations.deregister_unit(unit["id"], actor=ADMIN, command_id=cid())
    stranger = register(rpc, new_id_number, a["organization"]["id"])
    third_district = {"username": "op102", "role": "operator", "scope": "370102"}
    before = snapshot(database)
    for case, field, said in (("organization", "to_organization_id", "dissolved"),
                              ("unit", "to_unit_id", "deregistered")):
        transfer, member = stopped[case]
        sending_side = (OP_A, secretary(a["organization"]["id"]))
        strangers = (third_district, secretary("some-other-organization"), worker(stranger), MANAGER, HANDLER)
        for actor in (*sending_side, *strangers):
            refused_403(rpc.report_in, transfer["id"], actor=actor, command_id=cid())
        for actor in strangers:  # as they are refused the transfer itself
            refused_403(rpc.get_transfer, transfer["id"], actor=actor)
        receiving_side = OP_B if case == "organization" else secretary(b["organization"]["id"])
        for actor in (worker(member), receiving_side, ADMIN):
            told_422(rpc.report_in, transfer["id"], actor=actor, command_id=cid(), field=field, said=said)
        assert rpc.get_transfer(transfer["id"], actor=ADMIN)["status"] == "received"
    assert snapshot(database) == before


# ---- POST /members -----------------------------------------------------------------------------

def test_register_member_tells_whether_an_organization_exists_or_is_dissolved_only_to_those_who_may_register_there(
        rpc, database, two_districts, dissolved_organization, new_id_number):
    """The dissolved organization is in 370113, the unknown one nowhere: outside the caller's
    scope both are refused alike (403 naming organization_id, one detail for both), before the
    ID number is looked at. An operator of 370113 is told the dissolved one is dissolved, but
    an unknown one is refused as one outside their scope is. An admin, and a secretary whose
    list holds the id, are told either."""
    dissolved, unknown = dissolved_organization["id"], f"no-such-{uuid.uuid4().hex[:6]}"
    number = new_id_number("370112")  # registered: the refusals come before it is looked at (and audited)
    register(rpc, lambda: number, two_districts["b"]["organization"]["id"])
    member = register(rpc, new_id_number, two_districts["a"]["organization"]["id"])
    before = snapshot(database)

    def command(organization_id: str, id_number: str | None = None) -> dict:
        return {"name": "x", "id_number": id_number or new_id_number(), "organization_id": organization_id}

    for actor in (OP_B, secretary(two_districts["a"]["organization"]["id"]), worker(member), MANAGER, HANDLER):
        problems = [refused_403(rpc.register_member, command(organization_id, id_number), actor=actor,
                                command_id=cid())
                    for organization_id in (dissolved, unknown) for id_number in (None, number)]
        assert {fields_named(p) == {("body", "organization_id")} for p in problems} == {True}, problems
        details = {p["detail"].replace(dissolved, "X").replace(unknown, "X") for p in problems}
        assert details == {"organization X does not exist or is outside your scope"}, details
    problem = refused_403(rpc.register_member, command(unknown), actor=OP_A, command_id=cid())
    assert fields_named(problem) == {("body", "organization_id")} and "does not exist or is outside" in problem["detail"]
    told_422(rpc.register_member, command(dissolved), actor=OP_A, command_id=cid(), field="organization_id",
             said="dissolved")
    told_422(rpc.register_member, command(dissolved), actor=secretary(dissolved), command_id=cid(),
             field="organization_id", said="dissolved")
    told_422(rpc.register_member, command(unknown), actor=secretary(unknown), command_id=cid(),
             field="organization_id", said="does not exist")
    for organization_id, said in ((dissolved, "dissolved"), (unknown, "does not exist")):
        told_422(rpc.register_member, command(organization_id), actor=ADMIN, command_id=cid(),
                 field="organization_id", said=said)
    assert snapshot(database) == before  # nothing written: no member, no audit record of the ID number


# ---- PATCH /members/{id} with online_branch_id -------------------------------------------------

def test_update_member_tells_about_an_online_branch_only_to_those_who_may_change_the_member(
        rpc, database, two_districts, dissolved_organization, online_branch, new_id_number):
    """Outside the member's scope (the worker themselves included: a worker reads their record,
    does not change it) every online_branch_id is refused alike, 403, whether it is an online
    branch, an organization that is not one, a dissolved one or none; the member's side is told."""
    a = two_districts["a"]
    member = register(rpc, new_id_number, a["organization"]["id"])
    other = register(rpc, new_id_number, two_districts["b"]["organization"]["id"])
    before = snapshot(database)
    named = (online_branch["id"], a["organization"]["id"], dissolved_organization["id"], "no-such-organization")
    for actor in (OP_B, secretary(two_districts["b"]["organization"]["id"]), worker(member), worker(other),
                  MANAGER, HANDLER):
        details = {refused_403(rpc.update_member, member["id"], {"online_branch_id": organization_id}, actor=actor,
                               command_id=cid())["detail"] for organization_id in named}
        assert details == {f"organization {a['organization']['id']} (division 370113001) is outside your scope"}, \
            (actor, details)
    for actor in (OP_A, secretary(a["organization"]["id"]), ADMIN):
        told_422(rpc.update_member, member["id"], {"online_branch_id": a["organization"]["id"]}, actor=actor,
                 command_id=cid(), field="online_branch_id", said="is not an online branch")
        told_422(rpc.update_member, member["id"], {"online_branch_id": dissolved_organization["id"]}, actor=actor,
                 command_id=cid(), field="online_branch_id", said="dissolved")
    assert rejected(rpc.update_member, "no-such-member", {"online_branch_id": "no-such-organization"},
                    actor=OP_B, command_id=cid())["status"] == 404  # as GET /members/{id}: nothing there
    assert snapshot(database) == before


# ---- POST /transfers ---------------------------------------------------------------------------

def test_request_transfer_tells_the_destinations_state_only_to_those_who_may_move_the_member(
        rpc, database, two_districts, dissolved_organization, new_id_number):
    """Found with the others: a caller who may not request the member's transfer is refused
    (403) before the destination is asked about; the member and their side are told."""
    a = two_districts["a"]
    member = register(rpc, new_id_number, a["organization"]["id"])
    other = register(rpc, new_id_number, a["organization"]["id"])
    before = snapshot(database)
    for destination in (dissolved_organization["id"], "no-such-organization"):
        body = {"member_id": member["id"], "to_organization_id": destination, "reason": "x"}
        for actor in (OP_B, secretary(two_districts["b"]["organization"]["id"]), worker(other), MANAGER, HANDLER):
            refused_403(rpc.request_transfer, body, actor=actor, command_id=cid())
        for actor in (worker(member), OP_A, secretary(a["organization"]["id"])):
            told_422(rpc.request_transfer, body, actor=actor, command_id=cid(), field="to_organization_id",
                     said="dissolved" if destination == dissolved_organization["id"] else "does not exist")
    assert snapshot(database) == before
