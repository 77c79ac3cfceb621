"""Fault tests (issue 16, item 8) for two paths no other test walks:

(a) The outbox relay loses its broker connection (closed by the broker, as a restart or an
    operator would) while it publishes a large batch: what the broker took but never confirmed
    is published again from the outbox, and a consumer's inbox applies each event once.
(b) The gateway's event consumer is killed (kill -9) in the middle of a burst while a second
    replica stands by on the same single-active-consumer queue: the standby takes over, the
    event log keeps dense positions with each event once, and each notification is made once.

Each runs on a vhost and databases of its own; neither needs the rest of the platform."""

import threading
import uuid
from collections import Counter
from datetime import datetime, timezone

import pymongo
import pytest
from kombu import Connection, Exchange, Producer, Queue
from prometheus_client import generate_latest

from platform_contracts.envelope import CloudEvent
from platform_testing import (
    ServiceProcess, close_broker_connections, free_port, metric_value, queue_consumers,
    queue_depth, rabbit_vhost, wait_for,
)
from platform_testing.actors import actor_env
from service_kit.outbox import BATCH, OutboxRelay, relay_connection_name
from service_kit.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


# ---- (a) the relay's broker connection dropped mid-batch -----------------------------------

RELAY_EVENTS = 1_000  # one commit, published in batches of BATCH


def emit(store: Store, count: int) -> list[str]:
    events = [CloudEvent(source=store.source, type="unit.updated", subject=f"u{i}", data={}) for i in range(count)]
    store.transaction(lambda uow: uow.events.extend(events))
    return [e.id for e in events]


def publish_failures(source: str) -> float:
    return metric_value(generate_latest().decode(), "outbox_publish_failures_total", service=source)


def pause_halfway_through_the_next_batch(relay: OutboxRelay) -> tuple[threading.Event, threading.Event]:
    """Hold the relay's thread once it has sent half of its next batch on its open connection,
    until the test has had the broker drop that connection: the drop lands mid-batch, with
    messages on the broker, none confirmed and none marked. (events: halfway, dropped)"""
    halfway, dropped = threading.Event(), threading.Event()
    producer = relay.publisher._producer
    assert producer is not None, "the relay has no open connection yet"
    publish, sent = producer.publish, []

    def publish_then_hold(*args, **kwargs):
        publish(*args, **kwargs)
        sent.append(1)
        if len(sent) == BATCH // 2:
            halfway.set()
            dropped.wait(30)

    producer.publish = publish_then_hold  # this connection's producer only: the relay's next is a new one
    return halfway, dropped


def test_relay_connection_dropped_mid_batch_republishes_and_the_consumer_applies_each_event_once(mongodb_uri):
    name = f"relay{uuid.uuid4().hex[:6]}"
    consumer = Store(mongodb_uri, f"consumer{uuid.uuid4().hex[:6]}", "consumer")
    consumer.ensure_indexes()
    with rabbit_vhost() as amqp_uri, Connection(amqp_uri) as connection:
        relay = OutboxRelay(name, amqp_uri, poll_seconds=0.2)
        store = Store(mongodb_uri, name, name, after_commit=relay.committed)
        relay.outbox = store.db.outbox
        store.ensure_indexes()
        # Durable, so that the broker confirms each message only once it is safely queued.
        queue = Queue(f"q-{name}", exchange=Exchange(f"{name}.events", "topic", durable=True), routing_key="#",
                      durable=True)
        queue(connection.default_channel).declare()
        relay.start(lambda run: threading.Thread(target=run, daemon=True).start())
        try:
            warm_up = emit(store, 1)  # the relay's connection is open before the batch
            wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=20,
                     what="the warm-up event published and marked")
            failures_before = publish_failures(name)
            halfway, dropped = pause_halfway_through_the_next_batch(relay)

            ids = emit(store, RELAY_EVENTS)
            assert halfway.wait(30), "the relay did not start on the batch"
            wait_for(lambda: queue_depth(amqp_uri, queue.name) == 1 + BATCH // 2, timeout=10,
                     what="the first half of the batch on the broker")
            unpublished_at_drop = store.db.outbox.count_documents({"published_at": None})
            assert close_broker_connections(amqp_uri, relay_connection_name(name)), "no relay connection to drop"
            dropped.set()
            print(f"\nat the drop: {unpublished_at_drop} of {RELAY_EVENTS} outbox rows unpublished, "
                  f"{BATCH // 2} of them on the broker already")
            assert unpublished_at_drop == RELAY_EVENTS

            wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=60,
                     what="the whole batch published and marked after the drop")
            assert publish_failures(name) > failures_before, "the drop failed no publish"
        finally:
            relay.stop()
            store.close()

        received: list[dict] = []
        while (message := queue(connection.default_channel).get(no_ack=True)) is not None:
            received.append(message.payload)
    try:
        arrivals = Counter(envelope["id"] for envelope in received)
        print(f"{len(received)} messages for {len(ids) + 1} events, "
              f"{sum(n - 1 for n in arrivals.values())} of them published again after the drop")
        assert set(arrivals) == set(warm_up + ids)  # every event arrived
        # What the broker had taken before the drop went out again (never confirmed, never marked);
        # the rest of that batch at most once more, whatever the broker did with it; nothing else twice.
        assert [arrivals[i] for i in ids[:BATCH // 2]] == [2] * (BATCH // 2)
        assert max(arrivals.values()) == 2 and all(arrivals[i] == 1 for i in warm_up + ids[BATCH:])
        # The consumer's effect: each event applied once, however often it came.
        applied = [consumer.apply_event("on_unit_updated", CloudEvent.model_validate(envelope),
                                        lambda uow: uow.db.applied.insert_one({}, session=uow.session))
                   for envelope in received]
        assert applied.count(True) == len(arrivals) and consumer.db.applied.count_documents({}) == len(arrivals)
    finally:
        consumer.close()


# ---- (b) the gateway's active event consumer killed mid-burst, a standby taking over ---------

BURST = 1_000  # transfer.requested events, each making two notifications (the sending side's, the member's)
# A consumer killed inside its append (the log entries and their notifications are one
# transaction) leaves that transaction open: the database would hold the positions it wrote
# until the transaction's lifetime ends (60 s, as mongod's transactionLifetimeLimitSeconds;
# SecantusDB the same). The standby ends it once the dead replica has missed 4 heartbeats
# (service_kit.transaction_owners); the wait below still allows for the lifetime, so that a
# slow machine does not fail the test, which is about each event logged once.
TRANSACTION_LIFETIME_SECONDS = 60
HEARTBEAT_SECONDS = "1"


def start_gateway(mongodb_uri: str, amqp_uri: str, database: str, log_path) -> ServiceProcess:
    port = free_port()
    return ServiceProcess("gateway", {
        "MONGODB_URI": mongodb_uri, "MONGODB_GATEWAY_DB": database, "AMQP_URI": amqp_uri,
        "GATEWAY_PORT": str(port), "JWT_SECRET": "fault-tests-jwt-secret-of-at-least-32-bytes",
        "ADMIN_PASSWORD": "fault-tests-admin-password", "LOG_LEVEL": "INFO", **actor_env(),
        "TRANSACTION_OWNER_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
    }, port, str(log_path)).start()


def transfer_requested(division: str) -> dict:
    transfer = {"transfer_id": uuid.uuid4().hex, "member_id": uuid.uuid4().hex,
                "from_organization_id": uuid.uuid4().hex, "to_organization_id": uuid.uuid4().hex,
                "from_unit_id": None, "to_unit_id": None, "from_division": division, "to_division": "370112001"}
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "member", "type": "transfer.requested",
            "time": datetime.now(timezone.utc).isoformat(), "subject": transfer["transfer_id"],
            "datacontenttype": "application/json", "division": division, "correlationid": uuid.uuid4().hex,
            "causationid": None, "data": {**transfer, "status": "requested", "by": "someone", "note": None}}


def events_received(gateway: ServiceProcess) -> float:
    return metric_value(gateway.metrics(), "gateway_events_received_total", source="member")


def test_the_standby_gateway_takes_over_a_burst_from_a_killed_consumer_logging_each_event_once(
        mongodb_uri, tmp_path):
    database = f"gateway_failover_{uuid.uuid4().hex[:6]}"
    mongo = pymongo.MongoClient(mongodb_uri)
    event_log, notifications = mongo[database].event_log, mongo[database].notifications
    with rabbit_vhost() as amqp_uri:
        active = start_gateway(mongodb_uri, amqp_uri, database, tmp_path / "active.log")
        standby = None
        try:
            wait_for(lambda: queue_consumers(amqp_uri, "gateway.events") == 1, timeout=30, what="the first consumer")
            standby = start_gateway(mongodb_uri, amqp_uri, database, tmp_path / "standby.log")
            wait_for(lambda: queue_consumers(amqp_uri, "gateway.events") == 2, timeout=30, what="the standby")

            burst = [transfer_requested("370113001") for _ in range(BURST)]
            ids = [event["id"] for event in burst]
            with Connection(amqp_uri) as connection:
                exchange = Exchange("member.events", "topic", durable=True)
                producer = Producer(connection.default_channel, exchange=exchange)
                for event in burst:
                    producer.publish(event, routing_key=event["type"], declare=[exchange], serializer="json",
                                     message_id=event["id"])
            wait_for(lambda: event_log.count_documents({"type": "transfer.requested"}) >= BURST // 5, timeout=30,
                     interval=0.01, what="part of the burst logged")
            active.kill()
            logged_at_kill = event_log.count_documents({"event_id": {"$in": ids}})
            print(f"\nat the kill: {logged_at_kill} of {BURST} events logged, the rest queued or delivered "
                  f"to the killed consumer and not acknowledged")
            assert logged_at_kill < BURST, "the burst was logged before the kill: nothing was tested"
            assert events_received(standby) == 0, "the standby consumed before the kill: it was not standing by"

            wait_for(lambda: event_log.count_documents({"event_id": {"$in": ids}}) >= BURST,
                     timeout=TRANSACTION_LIFETIME_SECONDS + 60, interval=0.5, what="the standby logging the rest")
            wait_for(lambda: queue_depth(amqp_uri, "gateway.events") == 0 and queue_consumers(
                amqp_uri, "gateway.events") == 1, timeout=30, what="the queue drained by the one consumer left")
            assert events_received(standby) > 0

            # Each event once, at dense positions (the log holds nothing but this test's entries).
            entries = list(event_log.find({}, {"seq": 1, "event_id": 1, "type": 1, "envelope.causationid": 1}))
            seqs = sorted(entry["seq"] for entry in entries)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or a repeated position in the log"
            assert Counter(entry["event_id"] for entry in entries).most_common(1)[0][1] == 1
            assert Counter(e["event_id"] for e in entries if e["type"] == "transfer.requested") == Counter(ids)

            # Each notification made once: the sending side's and the member's, for every transfer.
            made = Counter((n["subject"], n["type"]) for n in notifications.find({}, {"subject": 1, "type": 1}))
            expected = Counter((event["subject"], kind) for event in burst
                               for kind in ("transfer.awaiting_approval", "transfer.requested"))
            assert made == expected
            logged_notifications = [e for e in entries if e["type"] == "notification.created"]
            assert sorted(e["seq"] for e in logged_notifications) == sorted(
                n["seq"] for n in notifications.find({}, {"seq": 1}))
            assert Counter(e["envelope"]["causationid"] for e in logged_notifications) == Counter(
                {event_id: 2 for event_id in ids})
        finally:
            for gateway in (active, standby):
                if gateway is not None:
                    gateway.stop()
            mongo.drop_database(database)
            mongo.close()
