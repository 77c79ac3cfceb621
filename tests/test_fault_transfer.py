"""Fault tests for transfers of organizational relationship (组织关系转接) across two districts,
Changqing (370113) → Licheng (370112), through the gateway as the two sides' operators do it.

(a) kill -9 the member service between approval and receipt: the receiving side's receipts
    and report-ins are in flight from client threads that retry with the same
    Idempotency-Key on 5xx and timeouts, as a frontend does. After the restart every transfer
    is completed exactly once (and no other transfer appeared), every member sits in the
    receiving organization, the stream carries one `transfer.received` and one
    `transfer.completed` per transfer, the organization service applied each completion once
    to each unit, both units count what they should, and the coverage counters agree with a
    full recount.
(b) kill -9 the organization service between `transfer.completed` and its coverage update:
    it is killed right after the first completion reaches the stream, while more are being
    reported in and their events are on their way to it. After the restart both units'
    member counts are exact (the inbox applies each event once: nothing lost, nothing
    doubled), and the service's reconciliation in report mode finds no drift."""

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from platform_testing import wait_for
from tests.test_e2e_transfers import account, created, full_member, joint_branch, ok, unit_body, unit_figures

pytestmark = pytest.mark.slow

TRANSFERS = 10
# How long a client keeps retrying one command. A process killed inside an open transaction
# leaves it open; the restarted one ends it once the killed one has missed 4 heartbeats
# (service_kit.transaction_owners; a second each in tests), and the database would at the
# transaction's lifetime (60 s, as mongod's transactionLifetimeLimitSeconds): writes that touch
# what it wrote wait until then, and the clients allow for the longer of the two.
DEADLINE_SECONDS = 120


# ---- helpers -------------------------------------------------------------------------------

# Requests sent and not yet answered, across the clients' threads: shown at each kill.
OUTSTANDING: list[str] = []


def send(api: httpx.Client, path: str, key: str, failures: list, json: dict | None = None) -> dict | None:
    """POST `path` until it is answered below 500, always with the same Idempotency-Key."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        OUTSTANDING.append(key)
        try:
            response = api.post(path, json=json, headers={"Idempotency-Key": key})
        except httpx.HTTPError:
            response = None
        finally:
            OUTSTANDING.remove(key)
        if response is not None and response.status_code < 500:
            if response.status_code != 200:
                failures.append(f"{path}: {response.status_code} {response.text[:300]}")
                return None
            return response.json()
        time.sleep(0.5)  # the client's pause before it sends again, as a frontend's
    failures.append(f"{path}: never answered")
    return None


def two_sides(platform, admin, street: str, members: int, receiving_members: int):
    """A unit in each district, each covered by a joint branch; `members` full members on the
    sending side (to be transferred) and `receiving_members` on the receiving side."""
    sending_unit = created(admin.post("/units", json=unit_body(f"370113{street}")))
    receiving_unit = created(admin.post("/units", json=unit_body(f"370112{street}")))
    sending = joint_branch(admin, f"370113{street}", sending_unit["id"])
    receiving = joint_branch(admin, f"370112{street}", receiving_unit["id"])
    with ThreadPoolExecutor(4) as pool:  # registered side by side: only the setup is faster
        moving = list(pool.map(lambda _: full_member(admin, sending, sending_unit), range(members)))
        list(pool.map(lambda _: full_member(admin, receiving, receiving_unit), range(receiving_members)))
    wait_for(lambda: unit_figures(admin, sending_unit)[0] == members, timeout=60, what="sending unit counted")
    wait_for(lambda: unit_figures(admin, receiving_unit)[0] == receiving_members, timeout=60,
             what="receiving unit counted")
    return sending_unit, receiving_unit, sending, receiving, moving


def request_and_approve(platform, sending_operator: str, receiving: dict, receiving_unit: dict,
                        members: list[dict], worker: str | None = None) -> list[dict]:
    def request(index: int) -> dict:
        token = worker if (worker and index == 0) else sending_operator  # the member asks, or the sending side
        with platform.client(token) as api:
            return created(api.post("/transfers", json={
                "member_id": members[index]["id"], "to_organization_id": receiving["id"],
                "to_unit_id": receiving_unit["id"], "reason": "工作调动到历城区"}))

    def approve(transfer: dict) -> str:
        with platform.client(sending_operator) as api:
            return ok(api.post(f"/transfers/{transfer['id']}/approve", json={}))["status"]

    with ThreadPoolExecutor(4) as pool:
        transfers = list(pool.map(request, range(len(members))))
        assert set(pool.map(approve, transfers)) == {"approved"}
    return transfers


def transfers_of(admin, receiving: dict) -> dict[str, dict]:
    page = ok(admin.get("/transfers", params={"organization_id": receiving["id"], "limit": 500}))
    return {t["id"]: t for t in page["items"]}


def per_transfer(stream, ids: set[str], event_type: str) -> Counter:
    """How many `event_type` events the stream carried for each of the transfers `ids`."""
    return Counter(e["data"]["subject"] for e in list(stream.events)
                   if e["data"]["type"] == event_type and e["data"]["subject"] in ids)


def unit_updates_per_completion(stream, ids: set[str]) -> Counter:
    """unit.updated events the organization service emitted applying the completions of `ids`,
    counted by (completion, unit): applied once, a completion moves each of its two units once."""
    completions = {e["data"]["id"] for e in list(stream.events)
                   if e["data"]["type"] == "transfer.completed" and e["data"]["subject"] in ids}
    return Counter((e["data"]["causationid"], e["data"]["subject"]) for e in list(stream.events)
                   if e["data"]["type"] == "unit.updated" and e["data"].get("causationid") in completions)


def assert_coverage_as_told(admin, division: str, full_members: int) -> None:
    """The coverage of a street the test made — one unit, covered by a joint branch, holding
    `full_members` full members by what the clients were told — recomputed here from
    CONTRACT.md's definitions, not by the recount the platform does with its own code."""
    expected = {"units": 1, "organization_covered": 1, "work_covered": 0, "uncovered": 0, "standalone_units": 0,
                "should_establish": int(full_members >= 3), "organization_rate": 1.0, "work_rate": 0.0,
                "standalone_rate": 0.0}
    coverage = ok(admin.get("/coverage", params={"division": division}))
    assert {key: coverage[key] for key in expected} == expected, (division, coverage)


def assert_no_drift(admin) -> None:
    """The coverage counters and units agree with a full recount (report only)."""
    report = ok(admin.post("/coverage/reconcile", params={"repair": "false"}))
    assert report["complete"] and report["drifted_counters"] == 0 and report["drifted_units"] == 0, report


# ---- (a) the member service killed between approval and receipt ---------------------------------

def test_kill_member_service_between_approval_and_receipt(platform, sse):
    stream = sse({"types": "transfer.received,transfer.completed,unit.updated"})
    receiving_before = 2
    with platform.client() as admin:
        sending_unit, receiving_unit, sending, receiving, members = two_sides(
            platform, admin, "205", TRANSFERS, receiving_before)
        sending_operator = account(platform, admin, "operator", "370113")
        receiving_operator = account(platform, admin, "operator", "370112")
        worker = account(platform, admin, "worker", members[0]["id"])
    transfers = request_and_approve(platform, sending_operator, receiving, receiving_unit, members, worker)
    ids = {t["id"] for t in transfers}

    answered: list[str] = []  # "receive:<id>" / "report-in:<id>", as the answers come
    failures: list[str] = []

    def receive_and_report_in(batch: list[dict]):
        with platform.client(receiving_operator) as side, platform.client(worker) as me:
            for transfer in batch:
                if send(side, f"/transfers/{transfer['id']}/receive", uuid.uuid4().hex, failures):
                    answered.append(f"receive:{transfer['id']}")
                time.sleep(0.3)  # pacing, not a wait: the steps spread out so that the kill lands among them
                # The member reports in themselves where they can; otherwise the receiving side.
                api = me if transfer["member_id"] == members[0]["id"] else side
                result = send(api, f"/transfers/{transfer['id']}/report-in", uuid.uuid4().hex, failures)
                if result:
                    answered.append(f"report-in:{transfer['id']}")
                    if result["status"] != "completed":
                        failures.append(f"report-in answered {result['status']}")
                time.sleep(0.3)  # pacing, as above

    clients = [threading.Thread(target=receive_and_report_in, args=(transfers[i::5],)) for i in range(5)]
    for client in clients:
        client.start()
    # Some receipts are through, most are still to come or in flight: kill -9 the member service.
    wait_for(lambda: len(answered) >= 3, timeout=60, interval=0.02, what="first receipts answered")
    answered_at_kill = len(answered)
    in_flight = {"requests": len(OUTSTANDING), **platform.in_flight()}
    platform.kill("member")
    print(f"\nin flight at the kill: {in_flight}")
    assert in_flight["requests"] or in_flight["outbox_unpublished"] or in_flight["unacknowledged"], in_flight
    for client in clients:
        client.join(DEADLINE_SECONDS * 2 + 10)
    assert not failures, failures
    assert answered_at_kill < 2 * TRANSFERS, "the kill landed after every command was answered"
    assert sorted(answered) == sorted([f"receive:{i}" for i in ids] + [f"report-in:{i}" for i in ids])

    with platform.client() as admin:
        # Every transfer completed, each exactly once; no retried request made another.
        listed = transfers_of(admin, receiving)
        assert set(listed) == ids
        for transfer_id in ids:
            steps = [step["status"] for step in listed[transfer_id]["history"]]
            assert listed[transfer_id]["status"] == "completed", listed[transfer_id]
            assert steps == ["requested", "approved", "received", "completed"], steps
        # Each member is in the receiving organization, its unit and its district.
        for member in members:
            moved = ok(admin.get(f"/members/{member['id']}"))
            assert (moved["organization_id"], moved["unit_id"], moved["division"], moved["open_transfer_id"]) == \
                   (receiving["id"], receiving_unit["id"], receiving["division"], None)
        # One transfer.received and one transfer.completed per transfer on the stream.
        wait_for(lambda: set(per_transfer(stream, ids, "transfer.completed")) == ids, timeout=120,
                 what="every transfer.completed")
        # Once nothing is left to deliver anywhere, a late duplicate would be on the stream.
        platform.wait_until_settled()
        for event_type in ("transfer.received", "transfer.completed"):
            counted = per_transfer(stream, ids, event_type)
            assert set(counted) == ids and set(counted.values()) == {1}, (event_type, counted)
        # Both units' counts moved by exactly the transfers.
        wait_for(lambda: (unit_figures(admin, sending_unit), unit_figures(admin, receiving_unit))
                 == ((0, False), (receiving_before + TRANSFERS, True)),
                 timeout=120, interval=0.5, what="both units counted the transfers")
        platform.wait_until_settled()
        assert unit_figures(admin, sending_unit) == (0, False)
        assert unit_figures(admin, receiving_unit) == (receiving_before + TRANSFERS, True)
        # The organization service applied each completion once, to each of its two units.
        wait_for(lambda: len(unit_updates_per_completion(stream, ids)) == 2 * TRANSFERS, timeout=30,
                 what="a unit.updated per unit for each completion")
        updates = unit_updates_per_completion(stream, ids)
        assert set(updates.values()) == {1}, updates
        # The coverage is what the clients were told, and the counters agree with a full recount.
        assert_coverage_as_told(admin, sending_unit["division"], 0)
        assert_coverage_as_told(admin, receiving_unit["division"], receiving_before + TRANSFERS)
        assert_no_drift(admin)


# ---- (b) the organization service killed between transfer.completed and its coverage update -------

def test_kill_organization_service_between_completion_and_coverage(platform, sse):
    stream = sse({"types": "transfer.completed,unit.updated,coverage.changed"})
    with platform.client() as admin:
        sending_unit, receiving_unit, sending, receiving, members = two_sides(platform, admin, "206", TRANSFERS, 0)
        assert unit_figures(admin, sending_unit) == (TRANSFERS, True)
        sending_operator = account(platform, admin, "operator", "370113")
        receiving_operator = account(platform, admin, "operator", "370112")
    transfers = request_and_approve(platform, sending_operator, receiving, receiving_unit, members)
    with platform.client(receiving_operator) as api:
        for transfer in transfers:
            assert ok(api.post(f"/transfers/{transfer['id']}/receive"))["status"] == "received"
    ids = {t["id"] for t in transfers}

    failures: list[str] = []
    reported: list[str] = []

    def report_in(batch: list[dict]):
        with platform.client(receiving_operator) as api:
            for transfer in batch:
                result = send(api, f"/transfers/{transfer['id']}/report-in", uuid.uuid4().hex, failures)
                if result:
                    reported.append(transfer["id"])
                time.sleep(0.15)  # pacing, not a wait: report-ins still come after the kill

    clients = [threading.Thread(target=report_in, args=(transfers[i::2],)) for i in range(2)]
    for client in clients:
        client.start()
    # The first completion is on the stream: the organization service is applying it or about
    # to, and the next ones are being reported in. kill -9 it now.
    wait_for(lambda: per_transfer(stream, ids, "transfer.completed"), timeout=60, interval=0.01,
             what="the first transfer.completed")
    completed_at_kill = sum(per_transfer(stream, ids, "transfer.completed").values())
    in_flight = {"requests": len(OUTSTANDING), **platform.in_flight()}
    platform.kill("organization")
    print(f"\nin flight at the kill: {in_flight}")
    assert in_flight["requests"] or in_flight["outbox_unpublished"] or in_flight["unacknowledged"], in_flight
    for client in clients:
        client.join(DEADLINE_SECONDS * 2 + 10)
    assert not failures, failures
    assert sorted(reported) == sorted(ids)
    assert completed_at_kill < TRANSFERS, "the kill landed after every transfer had completed"

    with platform.client() as admin:
        listed = transfers_of(admin, receiving)
        assert all(listed[i]["status"] == "completed" for i in ids)
        wait_for(lambda: set(per_transfer(stream, ids, "transfer.completed")) == ids, timeout=120,
                 what="every transfer.completed")
        # Nothing lost, nothing applied twice: the counts equal the transfers, and stay there.
        expected = ((0, False), (TRANSFERS, True))
        wait_for(lambda: (unit_figures(admin, sending_unit), unit_figures(admin, receiving_unit)) == expected,
                 timeout=120, interval=0.5, what="both units counted every transfer once")
        platform.wait_until_settled()  # nothing more to apply
        assert (unit_figures(admin, sending_unit), unit_figures(admin, receiving_unit)) == expected
        # Every completion was applied once: one unit.updated per unit for each of them.
        updates = unit_updates_per_completion(stream, ids)
        assert set(updates.values()) == {1} and len(updates) == 2 * TRANSFERS, updates
        # The coverage is what the clients were told, and the counters agree with a full recount.
        assert_coverage_as_told(admin, sending_unit["division"], 0)
        assert_coverage_as_told(admin, receiving_unit["division"], TRANSFERS)
        assert_no_drift(admin)
