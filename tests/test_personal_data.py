"""Personal data, end to end: members registered with ID numbers and phones through the API,
read, listed, looked up, changed, transferred and revealed; then every log file of the platform,
every event on an unfiltered event stream and every process's /metrics are searched for the
plaintext numbers and phones. Only the audited reveal endpoint may return a full ID number."""

import json
import random
import re
import uuid
from datetime import date, timedelta

import httpx
import pytest

from platform_contracts.member import id_number_check_character
from platform_testing import credit_code, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pass"


def new_id_number(district: str) -> str:
    born = date(1970, 1, 1) + timedelta(days=random.randrange(15000))
    body = f"{district}{born:%Y%m%d}{random.randrange(1000):03d}"
    return body + id_number_check_character(body)


def new_phone() -> str:
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_no_plaintext_id_number_or_phone_leaves_the_member_service(platform, sse):
    stream = sse({})  # every type, every division
    id_numbers, phones = [], []

    def remember_id(number):
        id_numbers.append(number)
        return number

    def remember_phone(phone):
        phones.append(phone)
        return phone

    with platform.client() as admin:
        sides = {}
        for division in ("370113301", "370112301"):
            unit = created(admin.post("/units", json={
                "credit_code": credit_code(division), "name": f"外卖站{uuid.uuid4().hex[:4]}",
                "type": "platform_company", "industry": "delivery", "division": division}))
            organization = created(admin.post("/organizations", json={
                "name": f"骑手支部{uuid.uuid4().hex[:4]}", "kind": "branch", "formation": "standalone",
                "division": division, "unit_ids": [unit["id"]]}))
            sides[division[:6]] = (unit, organization)
        unit, organization = sides["370113"]
        other_unit, other_organization = sides["370112"]

        members = []
        for stage in ("applicant", "probationary", "full"):
            body = {"name": "刘骑手", "id_number": remember_id(new_id_number("370113")),
                    "phone": remember_phone(new_phone()), "organization_id": organization["id"],
                    "unit_id": unit["id"], "stage": stage, "occupation": "rider", "mobile": stage == "full"}
            if stage == "full":
                body.update(joined_on="2018-07-01", stage_on="2019-07-01")
            members.append(created(admin.post("/members", json=body)))
        # Refused input must not be quoted back either: a wrong check character, a number
        # already registered, a malformed phone.
        bad = remember_id(id_numbers[0][:17] + ("1" if id_numbers[0][17] != "1" else "2"))
        refusals = [
            (admin.post("/members", json={"name": "错号", "id_number": bad, "phone": remember_phone(new_phone()),
                                          "organization_id": organization["id"]}), 422),
            (admin.post("/members", json={"name": "重号", "id_number": id_numbers[1],
                                          "organization_id": organization["id"]}), 409),
            (admin.post("/members", json={"name": "坏电话", "id_number": remember_id(new_id_number("370113")),
                                          "phone": remember_phone(new_phone()) + "9",
                                          "organization_id": organization["id"]}), 422),
        ]
        for response, status in refusals:
            assert response.status_code == status, response.text
            assert not any(secret in response.text for secret in id_numbers + phones), response.text

        member = members[0]
        for resource in members:
            assert re.fullmatch(r"\*{14}[0-9]{3}[0-9X]", resource["id_number"]), resource["id_number"]
            assert re.fullmatch(r"[0-9]{3}\*+[0-9]{4}", resource["phone"]), resource["phone"]
        # Reads, lists, a lookup by number (in a body), a change of phone and of number.
        assert ok(admin.get(f"/members/{member['id']}"))["id_number"] == "*" * 14 + id_numbers[0][-4:]
        listed = ok(admin.get("/members", params={"organization_id": organization["id"]}))["items"]
        assert {m["id"] for m in listed} == {m["id"] for m in members}
        assert ok(admin.get("/members", params={"division": "370113301", "mobile": "true"}))["items"][0]["id"] == \
               members[2]["id"]
        assert ok(admin.post("/members/lookup", json={"id_number": id_numbers[1]}))["id"] == members[1]["id"]
        changed = ok(admin.patch(f"/members/{member['id']}", json={"phone": remember_phone(new_phone())}))
        assert changed["phone"].endswith(phones[-1][-4:])
        replaced = remember_id(new_id_number("370113"))
        changed = ok(admin.patch(f"/members/{members[1]['id']}", json={"id_number": replaced}))
        assert changed["id_number"].endswith(replaced[-4:])
        assert admin.post("/members/lookup", json={"id_number": id_numbers[1]}).status_code == 404
        station = created(admin.post("/stations", json={
            "kind": "check_in_point", "name": "党员报到点", "division": "370113301", "address": "长清区",
            "location": {"lng": 116.75, "lat": 36.55}, "opening_hours": "24/7"}))
        # The member service learns of the station from its station.registered event.
        wait_for(lambda: admin.post(f"/members/{members[2]['id']}/check-ins",
                                    json={"station_id": station["id"]}).status_code == 201,
                 what="a check-in at the new station")

        operator = f"op{uuid.uuid4().hex[:6]}"
        created(admin.post("/users", json={"username": operator, "password": PASSWORD, "role": "operator",
                                           "scope": "370113"}))
        secretary = f"sec{uuid.uuid4().hex[:6]}"
        created(admin.post("/users", json={"username": secretary, "password": PASSWORD, "role": "secretary",
                                           "scope": [organization["id"]]}))
        worker = f"wk{uuid.uuid4().hex[:6]}"
        created(admin.post("/users", json={"username": worker, "password": PASSWORD, "role": "worker",
                                           "scope": members[2]["id"]}))

    # The secretary and the member see masks; neither may reveal.
    for username in (secretary, worker):
        with platform.client(platform.token(username, PASSWORD)) as api:
            seen = ok(api.get(f"/members/{members[2]['id']}"))
            assert seen["id_number"] == "*" * 14 + id_numbers[2][-4:]
            response = api.post(f"/members/{members[2]['id']}/id-number/reveal", json={"reason": "核对"})
            assert response.status_code == 403 and id_numbers[2] not in response.text

    # The operator of the member's district reveals the full number: the one place it appears.
    with platform.client(platform.token(operator, PASSWORD)) as api:
        response = api.post(f"/members/{member['id']}/id-number/reveal", json={"reason": "核对组织关系转接材料"})
        assert ok(response) == {"member_id": member["id"], "id_number": id_numbers[0]}
        assert response.headers.get("cache-control") == "no-store"
        assert api.post(f"/members/{member['id']}/id-number/reveal", json={}).status_code == 422

    # A transfer of the full member to Licheng, end to end.
    with platform.client() as admin:
        transfer = created(admin.post("/transfers", json={
            "member_id": members[2]["id"], "to_organization_id": other_organization["id"],
            "to_unit_id": other_unit["id"], "reason": "搬家"}))
        ok(admin.post(f"/transfers/{transfer['id']}/approve", json={}))
        ok(admin.post(f"/transfers/{transfer['id']}/receive"))
    with platform.client(platform.token(worker, PASSWORD)) as me:
        assert ok(me.post(f"/transfers/{transfer['id']}/report-in"))["status"] == "completed"
        assert ok(me.get(f"/transfers/{transfer['id']}"))["member_id"] == members[2]["id"]

    # Everything has travelled: the transfer's completion and the organization service's count.
    stream.wait_for(lambda e: e["type"] == "transfer.completed" and e["subject"] == transfer["id"])
    with platform.client() as admin:
        wait_for(lambda: ok(admin.get(f"/units/{other_unit['id']}"))["full_members"] == 1,
                 what="the receiving unit counted the member")
    stream.wait_for(lambda e: e["type"] == "unit.updated" and e["subject"] == other_unit["id"])
    types = {e["data"]["type"] for e in stream.events}
    assert {"member.registered", "member.updated", "member.checked_in", "transfer.requested",
            "transfer.completed"} <= types, types
    registered = {e["data"]["subject"]: e["data"]["data"] for e in stream.events
                  if e["data"]["type"] == "member.registered"}
    assert registered[member["id"]]["id_number"] == "*" * 14 + id_numbers[0][-4:]  # the mask travels, not the number

    # The search: plaintext numbers (and their unmasked birth-date part) and phones, nowhere.
    secrets = set(id_numbers) | {n[:14] for n in id_numbers} | set(phones)
    assert len(id_numbers) >= 6 and len(phones) >= 5
    places: dict[str, str] = {}
    log_files = sorted((platform.data_dir / "logs").glob("*.log")) + sorted(platform.data_dir.glob("*.log"))
    for process in platform.metrics_targets:  # gateway, organization, member
        assert any(p.name.startswith(process) and p.stat().st_size for p in log_files), (process, log_files)
    for path in log_files:
        places[f"log {path.name}"] = path.read_text(encoding="utf-8", errors="replace")
    places["event stream"] = "\n".join(json.dumps(e, ensure_ascii=False) for e in stream.events)
    for name, target in platform.metrics_targets.items():
        places[f"{name} /metrics"] = ok_text(httpx.get(f"http://{target}/metrics", timeout=10))
    assert len(stream.events) > 10
    leaks = {(place, secret) for place, text in places.items() for secret in secrets
             if secret in text or secret.lower() in text}
    assert not leaks, sorted(leaks)
    # The search can find what it looks for: the member ids and masks are in the same places.
    assert member["id"] in places["event stream"] and "*" * 14 + id_numbers[0][-4:] in places["event stream"]
    assert "POST /api/v1/members/{member_id}/id-number/reveal 200" in places["log gateway.log"]
    assert "register_member" in places["member /metrics"]


def ok_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.text
