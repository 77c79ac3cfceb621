"""Reasons are free text, and people type ID numbers and phones into them: they are masked
before they are stored, published (events, hence the event log and the streams) or returned."""

import uuid

ADMIN = {"username": "admin", "role": "admin", "scope": None}
OP_A = {"username": "op113", "role": "operator", "scope": "370113"}
PHONE_TYPED, PHONE_MASKED = "+86 138 1234 5678", "+86 138****5678"


def cid() -> str:
    return uuid.uuid4().hex


def register(rpc, new_id_number, organization) -> dict:
    command = {"name": "王骑手", "id_number": new_id_number(organization["division"][:6]),
               "organization_id": organization["id"], "stage": "full", "joined_on": "2015-07-01",
               "stage_on": "2016-07-01"}
    return rpc.register_member(command, actor=ADMIN, command_id=cid())


def test_free_text_reasons_carried_id_numbers_and_phones_in_clear(rpc, database, two_districts, new_id_number,
                                                                  issued, tap):
    a, b = two_districts["a"], two_districts["b"]
    member = register(rpc, new_id_number, a["organization"])
    the_worker = {"username": f"w-{member['id'][-6:]}", "role": "worker", "scope": member["id"]}
    secretary_b = {"username": "sec-b", "role": "secretary", "scope": [b["organization"]["id"]]}
    number = new_id_number()
    masked_number = "*" * 14 + number[-4:]
    reason = f"本人身份证{number}，联系电话 {PHONE_TYPED}，工作调动"
    shown = f"本人身份证{masked_number}，联系电话 {PHONE_MASKED}，工作调动"

    transfer = rpc.request_transfer({"member_id": member["id"], "to_organization_id": b["organization"]["id"],
                                     "reason": reason}, actor=the_worker, command_id=cid())
    assert transfer["reason"] == shown and transfer["history"][0]["note"] == shown
    stored = database.transfers.find_one({"_id": transfer["id"]})
    assert stored["reason"] == shown and stored["history"][0]["note"] == shown
    event = tap.wait_for(lambda e: e["type"] == "transfer.requested" and e["subject"] == transfer["id"])[0]
    assert event["data"]["note"] == shown

    rejected = rpc.reject_transfer(transfer["id"], {"reason": f"请核对{number}"},
                                   actor=secretary_b, command_id=cid())
    assert rejected["history"][-1]["note"] == f"请核对{masked_number}"
    event = tap.wait_for(lambda e: e["type"] == "transfer.rejected" and e["subject"] == transfer["id"])[0]
    assert event["data"]["note"] == f"请核对{masked_number}"

    rpc.reveal_id_number(member["id"], f"与{number}核对", actor=OP_A)
    audit = database.audit_log.find_one({"member_id": member["id"], "action": "reveal_id_number"})
    assert audit["reason"] == f"与{masked_number}核对"
    assert number not in str(list(database.audit_log.find({"member_id": member["id"]})))
