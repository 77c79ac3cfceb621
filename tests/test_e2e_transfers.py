"""End to end, over HTTP, on the platform as `make run` starts it: a member's organizational
relationship transferred from Changqing (370113) to Licheng (370112), each side acting with its
own account, while a frontend listens on the event stream; then the bad input of the issue.

Coverage only moves with member counts through `should_establish` (3 or more full members and
no standalone organization of its own), so both units here are covered by a joint branch, not a
standalone one: the sending unit starts with 3 full members (should establish) and the receiving
unit with 2, so the transfer clears the one and raises the other, and `coverage.changed` follows
on both sides."""

import os
import uuid
from datetime import date, timedelta

import httpx
import pymongo
import pytest

from platform_testing import credit_code, new_id_number, new_phone, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pass"


# ---- helpers -------------------------------------------------------------------------------

def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def problem_fields(response: httpx.Response) -> set:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {tuple(e["loc"]) for e in response.json().get("errors") or []}


def unit_body(division: str) -> dict:
    return {"credit_code": credit_code(division), "name": f"平台企业{uuid.uuid4().hex[:4]}",
            "type": "platform_company", "industry": "delivery", "division": division}


def joint_branch(api, division: str, unit_id: str) -> dict:
    return created(api.post("/organizations", json={
        "name": f"联合支部{uuid.uuid4().hex[:4]}", "kind": "joint_branch", "formation": "joint",
        "division": division, "unit_ids": [unit_id], "secretary": "李书记"}))


def full_member(api, organization: dict, unit: dict, **fields) -> dict:
    return created(api.post("/members", json={
        "name": "王骑手", "id_number": new_id_number(organization["division"][:6]), "phone": new_phone(),
        "organization_id": organization["id"], "unit_id": unit["id"], "stage": "full",
        "joined_on": "2015-07-01", "stage_on": "2016-07-01", "occupation": "rider", **fields}))


def account(platform, api, role: str, scope) -> str:
    """A new account of `role` and its token."""
    username = f"{role}{uuid.uuid4().hex[:6]}"
    created(api.post("/users", json={"username": username, "password": PASSWORD, "role": role, "scope": scope}))
    return platform.token(username, PASSWORD)


def unit_figures(api, unit: dict) -> tuple[int, bool]:
    current = ok(api.get(f"/units/{unit['id']}"))
    return current["full_members"], current["should_establish"]


# ---- the transfer across two districts --------------------------------------------------------

def test_transfer_across_two_districts_moves_both_sides(platform, sse):
    sending_division, receiving_division = "370113201", "370112201"
    stream = sse({"types": "transfer.*,coverage.*,unit.*"})
    with platform.client() as admin:
        sending_unit = created(admin.post("/units", json=unit_body(sending_division)))
        receiving_unit = created(admin.post("/units", json=unit_body(receiving_division)))
        sending = joint_branch(admin, sending_division, sending_unit["id"])
        receiving = joint_branch(admin, receiving_division, receiving_unit["id"])
        members = [full_member(admin, sending, sending_unit) for _ in range(3)]
        for _ in range(2):
            full_member(admin, receiving, receiving_unit)
        member = members[0]
        assert member["id_number"].startswith("*" * 14) and "*" in member["phone"]

        # The organization service counts the registrations: the sending unit should establish.
        wait_for(lambda: unit_figures(admin, sending_unit) == (3, True), what="sending unit counted 3")
        wait_for(lambda: unit_figures(admin, receiving_unit) == (2, False), what="receiving unit counted 2")
        stream.wait_for(lambda e: e["type"] == "coverage.alert_raised" and e["subject"] == sending_unit["id"])
        district_before = {d: ok(admin.get("/coverage", params={"division": d}))
                           for d in ("370113", "370112")}

        sending_operator = account(platform, admin, "operator", "370113")
        receiving_operator = account(platform, admin, "operator", "370112")
        worker = account(platform, admin, "worker", member["id"])
    # Each side's operator follows the whole transfer on their own stream.
    sides = [sse({"types": "transfer.*"}, token=sending_operator), sse({"types": "transfer.*"}, token=receiving_operator)]

    with platform.client(worker) as me:
        assert ok(me.get(f"/members/{member['id']}"))["id"] == member["id"]
        assert me.get(f"/members/{members[1]['id']}").status_code == 403
        transfer = created(me.post("/transfers", json={
            "member_id": member["id"], "to_organization_id": receiving["id"], "to_unit_id": receiving_unit["id"],
            "reason": "工作调动到历城区"}))
    assert (transfer["status"], transfer["from_organization_id"], transfer["to_organization_id"]) == \
           ("requested", sending["id"], receiving["id"])
    assert (transfer["from_division"], transfer["to_division"]) == (sending_division, receiving_division)

    with platform.client(receiving_operator) as api:
        wrong_side = api.post(f"/transfers/{transfer['id']}/approve", json={})
        assert wrong_side.status_code == 403, wrong_side.text
        assert wrong_side.headers["content-type"].startswith("application/problem+json")
        assert api.post(f"/transfers/{transfer['id']}/receive").status_code == 409  # not approved yet
    with platform.client(sending_operator) as api:
        approved = ok(api.post(f"/transfers/{transfer['id']}/approve", json={"letter_valid_days": 15}))
        assert approved["status"] == "approved" and approved["letter_expires_on"]
        assert date.fromisoformat(approved["letter_expires_on"]) >= date.today() + timedelta(days=14)
        assert api.post(f"/transfers/{transfer['id']}/receive").status_code == 403  # not the receiving side
    with platform.client(receiving_operator) as api:
        listed = ok(api.get("/transfers", params={"status": "approved", "organization_id": receiving["id"]}))
        assert [t["id"] for t in listed["items"]] == [transfer["id"]]
        assert ok(api.post(f"/transfers/{transfer['id']}/receive"))["status"] == "received"
    with platform.client(worker) as me:
        completed = ok(me.post(f"/transfers/{transfer['id']}/report-in"))
    assert completed["status"] == "completed"
    assert [step["status"] for step in completed["history"]] == ["requested", "approved", "received", "completed"]

    # The stream: the transfer's steps in order, then coverage on both sides caused by completion.
    steps = ["transfer.requested", "transfer.approved", "transfer.received", "transfer.completed"]
    stream.wait_for(lambda e: e["type"] == "transfer.completed" and e["subject"] == transfer["id"])
    seen = [e for e in stream.events if e["data"]["type"].startswith("transfer.")
            and e["data"]["subject"] == transfer["id"]]
    assert [e["data"]["type"] for e in seen] == steps
    assert [int(e["id"]) for e in seen] == sorted(int(e["id"]) for e in seen)
    for side in sides:
        side.wait_for(lambda e: e["type"] == "transfer.completed" and e["subject"] == transfer["id"])
        assert [e["data"]["type"] for e in side.events if e["data"]["subject"] == transfer["id"]] == steps
    done = seen[-1]
    assert done["data"]["data"]["from_unit_id"] == sending_unit["id"]
    assert done["data"]["data"]["to_unit_id"] == receiving_unit["id"]

    def caused_by_completion(division):
        return lambda e: (e["type"] == "coverage.changed" and e["subject"] == division
                          and e["data"]["cause"] == "transfer.completed")

    sent = stream.wait_for(caused_by_completion(sending_division))[-1]
    got = stream.wait_for(caused_by_completion(receiving_division))[-1]
    for change in (sent, got):
        assert int(change["id"]) > int(done["id"])
    sent_change, got_change = sent["data"]["data"], got["data"]["data"]
    assert (sent_change["before"]["should_establish"], sent_change["after"]["should_establish"]) == (1, 0)
    assert (got_change["before"]["should_establish"], got_change["after"]["should_establish"]) == (0, 1)
    cleared = stream.wait_for(lambda e: e["type"] == "coverage.alert_cleared" and e["subject"] == sending_unit["id"])
    assert cleared[-1]["data"]["data"]["full_members"] == 2
    raised = stream.wait_for(lambda e: e["type"] == "coverage.alert_raised" and e["subject"] == receiving_unit["id"])
    assert raised[-1]["data"]["data"]["full_members"] == 3

    with platform.client() as admin:
        assert unit_figures(admin, sending_unit) == (2, False)
        assert unit_figures(admin, receiving_unit) == (3, True)
        moved = ok(admin.get(f"/members/{member['id']}"))
        assert (moved["organization_id"], moved["unit_id"], moved["division"], moved["open_transfer_id"]) == \
               (receiving["id"], receiving_unit["id"], receiving_division, None)
        # GET /coverage agrees with the events, for the streets and for both districts.
        assert ok(admin.get("/coverage", params={"division": sending_division}))["should_establish"] == 0
        assert ok(admin.get("/coverage", params={"division": receiving_division}))["should_establish"] == 1
        for change, district, step in ((sent_change, "370113", -1), (got_change, "370112", +1)):
            now = ok(admin.get("/coverage", params={"division": district}))
            assert now["should_establish"] == district_before[district]["should_establish"] + step
            scope = next(s for s in change["scopes"] if s["division"] == district
                         and s["industry"] is None and s["type"] is None)
            assert scope["after"]["should_establish"] == now["should_establish"]
            assert now["units"] == district_before[district]["units"]
    with platform.client(sending_operator) as api:  # the member has left the sending district
        assert api.get(f"/members/{member['id']}").status_code == 403
    with platform.client(receiving_operator) as api:
        assert ok(api.get(f"/members/{member['id']}"))["organization_id"] == receiving["id"]


# ---- bad input --------------------------------------------------------------------------------

def member_database(platform):
    """The member service's database, as run_platform.py gives it to the service."""
    uri = os.environ.get("MONGODB_URI") or f"mongodb://127.0.0.1:{platform.secantus_port}"
    client = pymongo.MongoClient(uri, tz_aware=True)
    return client, client[os.environ.get("MONGODB_MEMBER_DB", "member")]


def test_bad_input_is_refused_with_the_field_named_and_nothing_written(platform):
    division, elsewhere = "370113202", "370112202"
    with platform.client() as api:
        unit = created(api.post("/units", json=unit_body(division)))
        other_unit = created(api.post("/units", json=unit_body(elsewhere)))
        organization = joint_branch(api, division, unit["id"])
        destination = joint_branch(api, elsewhere, other_unit["id"])
        dissolved = joint_branch(api, elsewhere, created(api.post("/units", json=unit_body(elsewhere)))["id"])
        assert ok(api.post(f"/organizations/{dissolved['id']}/dissolve"))["status"] == "dissolved"

        number = new_id_number()
        member = created(api.post("/members", json={"name": "赵快递", "id_number": number,
                                                    "organization_id": organization["id"], "unit_id": unit["id"]}))
        assert member["stage"] == "applicant"

        def members_here():
            return sorted(m["id"] for m in ok(api.get("/members", params={"organization_id": organization["id"],
                                                                          "limit": 500}))["items"])

        def transfers_of(member_id):
            return [(t["id"], t["status"], len(t["history"]))
                    for t in ok(api.get("/transfers", params={"organization_id": organization["id"],
                                                              "limit": 500}))["items"]
                    if t["member_id"] == member_id]

        before = members_here()

        # An invalid ID number (wrong check character), then one already registered.
        wrong = number[:17] + ("0" if number[17] != "0" else "1")
        response = api.post("/members", json={"name": "钱某", "id_number": wrong,
                                              "organization_id": organization["id"]})
        assert response.status_code == 422 and ("body", "id_number") in problem_fields(response)
        assert wrong not in response.text
        response = api.post("/members", json={"name": "孙某", "id_number": number.lower(),
                                              "organization_id": organization["id"]})
        assert response.status_code == 409 and ("body", "id_number") in problem_fields(response)
        assert number not in response.text
        assert members_here() == before

        # A full member without an admission date, or admitted less than a year before; a unit
        # that does not exist.
        body = {"name": "周某", "organization_id": organization["id"], "unit_id": unit["id"], "stage": "full"}
        for fields, field in (({}, "joined_on"), ({"joined_on": str(date.today() - timedelta(days=30))}, "stage_on"),
                              ({"stage": "applicant", "unit_id": "doesnotexist"}, "unit_id")):
            response = api.post("/members", json={**body, "id_number": new_id_number(), **fields})
            assert response.status_code == 422 and ("body", field) in problem_fields(response), response.text
        assert members_here() == before

        # A skipped stage: applicant → candidate.
        response = api.post(f"/members/{member['id']}/promote", json={"stage": "candidate"})
        assert response.status_code == 422 and ("body", "stage") in problem_fields(response)
        assert ok(api.get(f"/members/{member['id']}"))["stage"] == "applicant"
        assert ok(api.post(f"/members/{member['id']}/promote", json={"stage": "activist"}))["stage"] == "activist"

        # A transfer to the member's own organization, and to a dissolved one.
        request = {"member_id": member["id"], "to_organization_id": organization["id"], "reason": "调动"}
        response = api.post("/transfers", json=request)
        assert response.status_code == 422 and ("body", "to_organization_id") in problem_fields(response)
        response = api.post("/transfers", json={**request, "to_organization_id": dissolved["id"]})
        assert response.status_code == 422 and ("body", "to_organization_id") in problem_fields(response)
        response = api.post("/transfers", json={**request, "to_organization_id": destination["id"],
                                                "to_unit_id": "ghost-unit"})
        assert response.status_code == 422 and ("body", "to_unit_id") in problem_fields(response)
        assert transfers_of(member["id"]) == []
        assert ok(api.get(f"/members/{member['id']}"))["open_transfer_id"] is None

        # A second open transfer.
        first = created(api.post("/transfers", json={**request, "to_organization_id": destination["id"]}))
        response = api.post("/transfers", json={**request, "to_organization_id": destination["id"]})
        assert response.status_code == 409 and ("body", "member_id") in problem_fields(response)
        assert transfers_of(member["id"]) == [(first["id"], "requested", 1)]

        # An expired introduction letter. The shortest letter the API issues (0 days) is valid
        # through today, Beijing time, so its date is moved back in the member service's
        # database, as if it had been issued weeks ago; acting on it is then a 409. (That the
        # expiry timer then expires it, after which approving is a 409 too, is covered by the
        # member service's own tests: services/member/tests/test_service.py::test_letters_expire.)
        approved = ok(api.post(f"/transfers/{first['id']}/approve", json={"letter_valid_days": 0}))
        assert approved["letter_expires_on"] is not None
        client, database = member_database(platform)
        try:
            moved = database.transfers.update_one(
                {"_id": first["id"]}, {"$set": {"letter_expires_on": str(date.today() - timedelta(days=2))}})
            assert moved.matched_count == 1
        finally:
            client.close()
        history = transfers_of(member["id"])
        for action in ("approve", "receive", "report-in"):
            response = api.post(f"/transfers/{first['id']}/{action}", json={} if action == "approve" else None)
            assert response.status_code == 409, response.text
            # The expired letter, or (once the timer has expired the transfer) its state.
            assert problem_fields(response) & {("letter_expires_on",), ("path", "transfer_id")}, response.text
        assert "expired" in api.post(f"/transfers/{first['id']}/receive").json()["detail"]
        assert transfers_of(member["id"]) in (history, [(first["id"], "expired", 3)])
        assert ok(api.get(f"/members/{member['id']}"))["organization_id"] == organization["id"]

        # Malformed and unknown input.
        response = api.post("/transfers", content=b'{"member_id": ', headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        response = api.post("/transfers", json={**request, "reason": ""})
        assert response.status_code == 422 and ("body", "reason") in problem_fields(response)
        assert api.get("/transfers/does-not-exist").status_code == 404
        assert api.get("/members/does-not-exist").status_code == 404
        assert api.get("/members", params={"limit": 501}).status_code == 422
        assert members_here() == before


# ---- scope, the audit log and who hears of an ended transfer --------------------------------

def test_scope_refusals_the_audit_log_and_the_receiving_side_told(platform):
    division, elsewhere = "370113203", "370112203"
    with platform.client() as admin:
        unit = created(admin.post("/units", json=unit_body(division)))
        other_unit = created(admin.post("/units", json=unit_body(elsewhere)))
        sending = joint_branch(admin, division, unit["id"])
        receiving = joint_branch(admin, elsewhere, other_unit["id"])
        member = full_member(admin, sending, unit)
        sending_operator = account(platform, admin, "operator", "370113")
        receiving_operator = account(platform, admin, "operator", "370112")
        receiving_secretary = account(platform, admin, "secretary", [receiving["id"]])

    with platform.client(receiving_secretary) as api:
        # A secretary reads the organization they run, and no other; nor the division's records.
        assert ok(api.get(f"/organizations/{receiving['id']}"))["id"] == receiving["id"]
        refused = api.get(f"/organizations/{sending['id']}")
        assert refused.status_code == 403 and problem_fields(refused) == {("path", "organization_id")}
        assert api.get("/organizations").status_code == 403

    with platform.client(receiving_operator) as api:
        # A filter outside the caller's scope is refused, not answered with an empty page.
        for path, params in (("/members", {"division": division}), ("/members", {"organization_id": sending["id"]})):
            response = api.get(path, params=params)
            assert response.status_code == 403, (path, params, response.text)
        # A transfer has two sides: the other side's division narrows, within what is theirs.
        for t in ok(api.get("/transfers", params={"division": "3701", "limit": 500}))["items"]:
            sides = (t["from_division"], t["to_division"])
            assert any(d.startswith("370112") for d in sides) and any(d.startswith("3701") for d in sides), t
        assert ok(api.get("/members", params={"division": elsewhere}))["items"] == []
        # Refused, and on record.
        response = api.post(f"/members/{member['id']}/id-number/reveal", json={"reason": "核对身份"})
        assert response.status_code == 403
        assert api.get("/admin/audit-log").status_code == 403
    with platform.client() as admin:
        log = ok(admin.get("/admin/audit-log", params={"member_id": member["id"]}))
        assert [(r["role"], r["outcome"], r["reason"]) for r in log["items"]] == [("operator", "refused", "核对身份")]

    with platform.client(sending_operator) as api:
        transfer = created(api.post("/transfers", json={
            "member_id": member["id"], "to_organization_id": receiving["id"], "to_unit_id": other_unit["id"],
            "reason": "工作调动"}))
        ok(api.post(f"/transfers/{transfer['id']}/approve", json={}))
        ok(api.post(f"/transfers/{transfer['id']}/reject", json={"reason": "本人申请暂缓"}))

    def receiving_side_told():
        with platform.client(receiving_operator) as api:
            return [n["type"] for n in ok(api.get("/notifications"))["items"] if n["subject"] == transfer["id"]]

    wait_for(lambda: receiving_side_told() == ["transfer.rejected", "transfer.awaiting_receipt"],
             what="the receiving side told the approved transfer was rejected")
