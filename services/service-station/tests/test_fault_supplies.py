"""A `kill -9` of the service-station service in the middle of a burst of supply adjustments:
no adjustment is lost or applied twice. Each adjustment is a command with an id (the client's
Idempotency-Key); the client sends again every one it got no answer for, to the replica started
after the crash, and the command log answers those already applied with their first result.
In a vhost and databases of its own, so that no other replica takes the calls."""

import random
from collections import Counter
import time
import uuid

import pymongo
import pytest

from nameko.exceptions import RpcTimeout

from platform_contracts.problems import Rejected
from platform_testing import rabbit_vhost, rpc_cluster, wait_for

ADMIN = {"username": "admin", "role": "admin", "scope": None}
BURST = 150


@pytest.fixture
def lone_platform(mongodb_uri, start_service):
    suffix = uuid.uuid4().hex[:6]
    with rabbit_vhost() as amqp_uri:
        env = {"AMQP_URI": amqp_uri, "MONGODB_SERVICE_STATION_DB": f"station_fault_{suffix}",
               "MONGODB_ORGANIZATION_DB": f"organization_fault_{suffix}"}
        start_service("organization", {**env, "RECONCILE_INTERVAL_SECONDS": "86400"}, log_name="organization-fault")
        client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
        try:
            with rpc_cluster(amqp_uri, timeout=10) as proxy:
                yield {"env": env, "rpc": proxy["service-station"], "db": client[env["MONGODB_SERVICE_STATION_DB"]]}
        finally:
            client.close()
            # Stopped while their vhost is still there: without it a stopping service retries the
            # broker until it is killed (30 s each).
            start_service.stop_all()


def test_a_crash_mid_burst_loses_no_adjustment_and_applies_none_twice(lone_platform, start_service):
    rpc, db, env = lone_platform["rpc"], lone_platform["db"], lone_platform["env"]
    first = start_service("service-station", env, log_name="station-fault-first")
    station = rpc.register_station({
        "kind": "warm_station", "name": "暖新驿站", "division": "370113001", "address": "长清区",
        "location": {"lng": 116.8, "lat": 36.55}, "opening_hours": "24/7"}, actor=ADMIN, command_id=uuid.uuid4().hex)
    rpc.set_supply(station["id"], "water", {"quantity": 10_000, "low_threshold": 0}, actor=ADMIN,
                   command_id=uuid.uuid4().hex)
    rng = random.Random(13)
    commands = {uuid.uuid4().hex: rng.choice([-5, -3, -1, 2, 4]) for _ in range(BURST)}
    replies = {key: rpc.adjust_supply.call_async(station["id"], "water", {"delta": delta, "reason": "burst"},
                                                 actor=ADMIN, command_id=key) for key, delta in commands.items()}
    wait_for(lambda: db.supply_adjustments.count_documents({}) >= BURST // 4, timeout=30, interval=0.005,
             what="a quarter of the burst applied")
    first.kill()  # SIGKILL mid-burst: transactions in flight are aborted, unacknowledged calls stay queued
    applied_at_kill = db.supply_adjustments.count_documents({})
    assert applied_at_kill < BURST, "the burst was over before the kill: nothing was tested"

    start_service("service-station", env, log_name="station-fault-second")
    # The client sends every command again under its id (the killed replica's answers never
    # came; which ones it applied, the client cannot know); the new replica also takes what was
    # left queued. A command applied before is answered from the command log.
    # A transaction the killed replica left open holds the station's document until the new
    # replica finds the killed one silent and ends its sessions (service_kit.transaction_owners,
    # 4 heartbeats of a second here): the first calls after the crash may wait for that, and are
    # sent again like any call that got no answer.
    restarted = time.monotonic()
    deadline = restarted + 180
    for key, delta in commands.items():
        while True:
            try:
                rpc.adjust_supply(station["id"], "water", {"delta": delta, "reason": "burst"}, actor=ADMIN,
                                  command_id=key)
                break
            except (Rejected, RpcTimeout) as failure:  # 503 while the new replica's database warms up
                assert isinstance(failure, RpcTimeout) or failure.status == 503, failure
                assert time.monotonic() < deadline, "the burst was not through 3 minutes after the crash"
                time.sleep(0.2)  # the client's pause before it sends again, as a real client's
    print(f"every command answered {time.monotonic() - restarted:.1f} s after the restart")
    del replies  # the answers of the killed replica, never to come for some

    assert db.supply_adjustments.count_documents({}) == BURST
    assert db.commands.count_documents({"_id": {"$in": list(commands)}}) == BURST
    quantity = db.stations.find_one({"_id": station["id"]})["supplies"]["water"]["quantity"]
    assert quantity == 10_000 + sum(commands.values())
    # Every adjustment saw its own before (after - delta): chained, they lead from 10,000 to the end.
    balance = Counter()
    for a in db.supply_adjustments.find():
        balance[a["quantity_after"] - a["delta"]] += 1
        balance[a["quantity_after"]] -= 1
    assert +balance == {10_000: 1} and -balance == {quantity: 1}
