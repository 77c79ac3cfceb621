"""Fault test: kill -9 the organization service while commands and events are in flight.

Clients keep retrying their commands with the same Idempotency-Key, as a real frontend
does after a timeout; member events keep arriving, paced by the registrations so that some
are published only once later registrations are answered. The test shows the kill landed
mid-flight (commands still unanswered and member events not yet published, so not applied,
when it died), and that after the restart nothing is lost or applied twice, and the
coverage counters equal a full recount."""

import json
import random
import threading
import time
import uuid
from collections import Counter

import pytest
from kombu import Connection, Exchange, Producer
from nameko.exceptions import get_module_path, registry

from platform_contracts.problems import Rejected
from platform_testing import rpc_cluster, wait_for
from tests.harness import ClientRecord, register_units_until_answered

pytestmark = pytest.mark.slow
registry[get_module_path(Rejected)] = Rejected

UNITS = 40
MEMBER_EVENTS = 60
DIVISION = "370114201"


def publish_member_events(amqp_uri: str, unit_ids: dict, sent: Counter, published_at: list):
    """Spread over the registrations: event `index` waits for its share of registered units,
    so the last ones go out only after the last registration is answered."""
    exchange = Exchange("member.events", "topic", durable=True)
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = Producer(connection.default_channel, exchange=exchange)
        for index in range(MEMBER_EVENTS):
            wait_for(lambda: len(unit_ids) > index * UNITS // MEMBER_EVENTS, timeout=180, interval=0.01,
                     what=f"the units registered before member event {index}")
            unit_id = random.choice(list(unit_ids.values()))
            envelope = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "member",
                        "type": "member.registered", "time": "2026-11-22T08:00:00+00:00",
                        "data": {"member_id": f"fault-{index}", "organization_id": "o", "unit_id": unit_id,
                                 "stage": "full", "category": "full"}}
            published_at.append(time.monotonic())  # before it leaves: the earliest it can be applied
            producer.publish(json.dumps(envelope), routing_key="member.registered", declare=[exchange],
                             content_type="application/json", message_id=envelope["id"])
            sent[unit_id] += 1


def test_kill_organization_service_mid_flight(platform, sse):
    stream = sse({"types": "unit.registered", "division": DIVISION})
    record, sent, published_at = ClientRecord(), Counter(), []
    results, failures, outstanding = record.results, record.failures, record.outstanding
    commands = threading.Thread(target=register_units_until_answered, args=(platform, DIVISION, UNITS, record),
                                kwargs={"attempts": 60, "pause": 0.5})
    events = threading.Thread(target=publish_member_events, args=(platform.amqp_uri, results, sent, published_at))
    commands.start()
    events.start()
    wait_for(lambda: len(results) >= UNITS // 4 and len(published_at) >= 5, timeout=60, interval=0.01,
             what="some units registered and member events published")
    in_flight = {"requests": len(outstanding), **platform.in_flight()}
    killed_at = time.monotonic()
    answered_at_kill = len(results)
    platform.kill("organization")
    print(f"\nin flight at the kill: {in_flight}")
    assert in_flight["requests"] or in_flight["outbox_unpublished"] or in_flight["unacknowledged"], in_flight
    commands.join(180)
    events.join(180)
    assert not failures, failures
    assert len(results) == UNITS and len(set(results.values())) == UNITS
    # The kill landed mid-flight: registrations were still unanswered, and member events were
    # published after it (the service could not have applied them before it died).
    assert answered_at_kill < UNITS, "the kill landed after every command was answered"
    published_after_kill = sum(1 for at in published_at if at >= killed_at)
    assert 0 < published_after_kill < MEMBER_EVENTS, \
        f"{published_after_kill} of {MEMBER_EVENTS} member events published after the kill"

    with platform.client() as api:
        def counts():
            units = api.get("/units", params={"division": DIVISION, "limit": 500}).json()["items"]
            return {u["id"]: u["full_members"] for u in units}
        # Every member event applied exactly once: the counts match what was sent.
        wait_for(lambda: counts() == {uid: sent.get(uid, 0) for uid in results.values()},
                 timeout=60, interval=0.5, what="member counts to match the events sent")
        assert sum(counts().values()) == MEMBER_EVENTS
        # Coverage recomputed here from what the clients were told (CONTRACT.md's definitions):
        # no organization covers these units; those sent 3 or more full members should have one.
        coverage = api.get("/coverage", params={"division": DIVISION}).json()
        should_establish = sum(1 for uid in results.values() if sent.get(uid, 0) >= 3)
        assert {k: coverage[k] for k in ("units", "organization_covered", "work_covered", "uncovered",
                                         "standalone_units", "should_establish")} == \
            {"units": UNITS, "organization_covered": 0, "work_covered": 0, "uncovered": UNITS,
             "standalone_units": 0, "should_establish": should_establish}, coverage

    # Every registration reached the stream exactly once.
    stream.wait_for(lambda e: len({x["data"]["subject"] for x in stream.events}) >= UNITS, timeout=30)
    per_unit = Counter(e["data"]["subject"] for e in stream.events)
    assert set(per_unit) == set(results.values())
    assert set(per_unit.values()) == {1}

    with rpc_cluster(platform.amqp_uri, timeout=60) as proxy:
        report = proxy.organization.reconcile_coverage(
            actor={"username": "admin", "role": "admin", "scope": None}, repair=False)
    assert report["drifted_counters"] == 0 and report["drifted_units"] == 0, report
