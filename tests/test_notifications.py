"""Notifications end to end on the platform as `make run` starts it: a transfer from Changqing
(370113) to Licheng (370112), each side's operator and the member listening on their own event
stream. The side that must act is told, on its stream and at GET /notifications, and the other
side is not; the member hears of every step."""

import uuid

import pytest

from platform_testing import wait_for
from tests.test_e2e_transfers import (
    account, created, full_member, joint_branch, new_id_number, new_phone, ok, unit_body,
)

pytestmark = pytest.mark.slow


def notice_of(kind: str, transfer_id: str):
    return lambda e: (e["type"] == "notification.created" and e["data"]["type"] == kind
                      and e["data"]["subject"] == transfer_id)


def about(transfer_id: str):
    return lambda e: e["type"] == "notification.created" and e["data"]["subject"] == transfer_id


def inbox(platform, token: str, transfer_id: str, **params) -> list[dict]:
    with platform.client(token) as api:
        items = ok(api.get("/notifications", params=params))["items"]
    return [n for n in items if n["subject"] == transfer_id]


def test_the_side_that_must_act_and_the_member_are_notified(platform, sse):
    sending_division, receiving_division = "370113203", "370112203"
    with platform.client() as admin:
        sending_unit = created(admin.post("/units", json=unit_body(sending_division)))
        receiving_unit = created(admin.post("/units", json=unit_body(receiving_division)))
        sending = joint_branch(admin, sending_division, sending_unit["id"])
        receiving = joint_branch(admin, receiving_division, receiving_unit["id"])
        # The plaintext the member was registered with: the response holds only masked values.
        id_number, phone = new_id_number(sending_division[:6]), new_phone()
        member = full_member(admin, sending, sending_unit, id_number=id_number, phone=phone)
        assert id_number not in str(member) and phone not in str(member)
        sending_operator = account(platform, admin, "operator", "370113")
        receiving_operator = account(platform, admin, "operator", "370112")
        worker = account(platform, admin, "worker", member["id"])
    sending_stream = sse(token=sending_operator)
    receiving_stream = sse(token=receiving_operator)
    member_stream = sse(token=worker)

    with platform.client(worker) as me:
        transfer = created(me.post("/transfers", json={
            "member_id": member["id"], "to_organization_id": receiving["id"], "to_unit_id": receiving_unit["id"],
            "reason": "工作调动"}))
    tid = transfer["id"]

    # Requested: the sending side must approve.
    [notice] = [e["data"]["data"] for e in sending_stream.wait_for(notice_of("transfer.awaiting_approval", tid))]
    assert notice["audience"]["division"] == sending_division
    wait_for(lambda: inbox(platform, sending_operator, tid), what="the sending operator's notification")
    [listed] = inbox(platform, sending_operator, tid, unread="true")
    assert (listed["id"], listed["type"], listed["read"]) == (notice["id"], "transfer.awaiting_approval", False)
    member_stream.wait_for(notice_of("transfer.requested", tid))
    assert inbox(platform, receiving_operator, tid) == []
    assert not [e for e in receiving_stream.events if about(tid)(e["data"])]

    with platform.client(sending_operator) as api:
        ok(api.post(f"/transfers/{tid}/approve", json={}))
        assert ok(api.post(f"/notifications/{listed['id']}/read"))["read"] is True
        assert api.post(f"/notifications/{uuid.uuid4().hex}/read").status_code == 404
    assert inbox(platform, sending_operator, tid, unread="true") == []

    # Approved: now the receiving side must receive, and only it is told.
    receiving_stream.wait_for(notice_of("transfer.awaiting_receipt", tid))
    wait_for(lambda: inbox(platform, receiving_operator, tid), what="the receiving operator's notification")
    assert [n["type"] for n in inbox(platform, receiving_operator, tid)] == ["transfer.awaiting_receipt"]
    assert [e["data"]["data"]["type"] for e in receiving_stream.events if about(tid)(e["data"])] == \
           ["transfer.awaiting_receipt"]
    with platform.client(receiving_operator) as api:
        assert api.post(f"/notifications/{listed['id']}/read").status_code == 404  # not theirs
        ok(api.post(f"/transfers/{tid}/receive"))

    # Received: the member must report in; then the transfer completes.
    member_stream.wait_for(notice_of("transfer.awaiting_report_in", tid))
    with platform.client(worker) as me:
        assert ok(me.post(f"/transfers/{tid}/report-in"))["status"] == "completed"
    member_stream.wait_for(notice_of("transfer.completed", tid))

    steps = ["transfer.requested", "transfer.approved", "transfer.awaiting_report_in", "transfer.completed"]
    mine = [e["data"] for e in member_stream.events if about(tid)(e["data"])]
    assert [n["data"]["type"] for n in mine] == steps
    assert {e["data"]["type"] for e in member_stream.events} == {"notification.created"}  # nothing else
    wait_for(lambda: len(inbox(platform, worker, tid)) == 4, what="the member's four notifications")
    assert [n["type"] for n in inbox(platform, worker, tid)] == steps[::-1]  # newest first
    for n in mine:  # ids, never personal data
        text = n["data"]["title"] + n["data"]["body"]
        assert member["name"] not in text and id_number not in text and phone not in text
    assert not [e for e in sending_stream.events
                if notice_of("transfer.awaiting_receipt", tid)(e["data"])]  # the receiving side's alone
