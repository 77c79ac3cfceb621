"""The outbox relay on a real RabbitMQ and MongoDB wire server: what a commit hands over is
published at once, leftovers of a crash are found by the poll, and while the broker is away the
backlog gauges still tell the operator."""

import contextlib
import threading
import uuid
from datetime import timedelta

import pytest
from bson import ObjectId
from kombu import Connection, Exchange, Queue
from prometheus_client import generate_latest

from platform_contracts.envelope import CloudEvent
from platform_testing import metric_value, rabbit_vhost, wait_for
from service_kit.outbox import LEFTOVER_AFTER_SECONDS, LIVE_RELAY_GRACE_SECONDS, OutboxRelay, outbox_record
from service_kit.store import Store, utc_now
from service_kit.transaction_owners import TransactionOwners

pytestmark = pytest.mark.timeout(90)


def in_a_thread(run):
    """As the gateway runs the relay; the services run it in a green thread."""
    threading.Thread(target=run, daemon=True).start()


def relay_and_store(mongodb_uri: str, amqp_uri: str) -> tuple[OutboxRelay, Store]:
    name = f"relay{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(name, amqp_uri, poll_seconds=0.2)
    store = Store(mongodb_uri, name, name, after_commit=relay.committed)
    relay.outbox = store.db.outbox
    store.ensure_indexes()
    return relay, store


def emit(store: Store, count: int = 1) -> list[str]:
    events = [CloudEvent(source=store.source, type="unit.updated", subject=f"u{i}", data={}) for i in range(count)]
    store.transaction(lambda uow: uow.events.extend(events))
    return [e.id for e in events]


@contextlib.contextmanager
def listening(amqp_uri: str, source: str):
    """A queue on `<source>.events`; yields drain(), which returns every event id received so far."""
    received: list[str] = []
    with Connection(amqp_uri) as connection:
        exchange = Exchange(f"{source}.events", "topic", durable=True)
        queue = Queue(f"q-{source}", exchange=exchange, routing_key="#", auto_delete=True)
        queue(connection.default_channel).declare()

        def drain() -> list[str]:
            while (message := queue(connection.default_channel).get(no_ack=True)) is not None:
                received.append(message.payload["id"])
            return received

        yield drain


def test_committed_events_are_published_in_order_and_leftovers_are_found(mongodb_uri):
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        with listening(amqp_uri, store.source) as drain:
            received = drain()
            relay.start(in_a_thread)
            try:
                ids = emit(store, 3) + emit(store, 2)
                wait_for(lambda: len(drain()) >= 5, what="five events published")
                assert received == ids
                # Marked published together, shortly after.
                wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=5,
                         what="the events marked published")

                # A record written by a process that died before handing it over.
                leftover = CloudEvent(source=store.source, type="unit.updated", subject="x", data={})
                store.db.outbox.insert_one({
                    "_id": ObjectId(), "type": leftover.type, "envelope": leftover.to_json_dict(),
                    "created_at": utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS + 1), "published_at": None})
                wait_for(lambda: leftover.id in drain(), what="the leftover published")
                assert received.count(leftover.id) == 1 and len(received) == 6
            finally:
                relay.stop()
        # Stopping marks what was published: nothing goes out again after a restart.
        assert store.db.outbox.count_documents({"published_at": None}) == 0


def test_while_the_broker_is_away_the_backlog_gauges_still_move(mongodb_uri):
    relay, store = relay_and_store(mongodb_uri, "amqp://guest:guest@127.0.0.1:1/")  # nothing listens there
    emit(store, 2)
    relay.start(in_a_thread)
    try:
        def gauges():
            text = generate_latest().decode()
            return (metric_value(text, "outbox_pending_events", service=store.source),
                    metric_value(text, "outbox_publish_failures_total", service=store.source))

        wait_for(lambda: gauges()[0] == 2 and gauges()[1] >= 1, timeout=40, what="the backlog gauges moving")
        assert store.db.outbox.count_documents({"published_at": None}) == 2
    finally:
        relay._running = False  # stop() would wait out the publisher's connection retries


def test_a_handed_over_backlog_older_than_the_leftover_age_is_published_once(mongodb_uri):
    """A relay behind by more than LEFTOVER_AFTER_SECONDS (a burst, a slow broker) holds records
    the poll would take for a dead process's leftovers: its poll leaves them to the hand-over."""
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        with listening(amqp_uri, store.source) as drain:
            relay.start(in_a_thread)
            try:
                emit(store)  # the start's catch-up is over once this is out
                wait_for(lambda: len(drain()) == 1, what="the first event published")
                old = utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS + 1)
                backlog = [{"_id": ObjectId(), "type": "unit.updated", "created_at": old, "published_at": None,
                            "envelope": CloudEvent(source=store.source, type="unit.updated", subject=f"b{i}",
                                                   data={}).to_json_dict()} for i in range(2_000)]
                # Written and handed over as one step: after a real commit the poll cannot take a
                # record before the hand-over, which is younger than the leftover age then.
                with relay._handover:
                    store.db.outbox.insert_many(backlog)
                    relay._committed.extend(backlog)
                relay.wake()
                wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=60,
                         what="the backlog published and marked")
            finally:
                relay.stop()
            received = drain()
        assert sorted(received[1:]) == sorted(r["envelope"]["id"] for r in backlog)  # each once


def test_another_replicas_backlog_is_left_to_it_while_it_lives_and_taken_once_it_is_gone(mongodb_uri):
    """Records another replica committed, and its relay has not published yet however old,
    are its own while its heartbeat is fresh; once it is silent they are leftovers."""
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        other = TransactionOwners(store.db, heartbeat_seconds=0.2)
        with store.client.start_session() as session:
            other.session_started(session)  # the other replica has written in a transaction
        this = TransactionOwners(store.db, heartbeat_seconds=0.2)  # judges staleness by its own heartbeat
        relay.other_relays_alive = this.others_alive
        old = utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS + 1)
        events = [CloudEvent(source=store.source, type="unit.updated", subject=f"o{i}", data={}) for i in range(3)]
        store.db.outbox.insert_many([outbox_record(ObjectId(), e.type, e.to_json_dict(), old, other.owner)
                                     for e in events])
        beating = threading.Event()
        threading.Thread(target=other.run, args=(beating,), daemon=True).start()
        try:
            with listening(amqp_uri, store.source) as drain:
                relay.publish_leftovers()
                assert drain() == []  # alive: its relay's to publish
                beating.set()
                wait_for(lambda: this.beat() == 1, timeout=10, interval=0.2,
                         what="the other replica seen silent for four heartbeats")
                assert other.owner not in this.others_alive()
                relay.publish_leftovers()
                assert drain() == [e.id for e in events]
        finally:
            beating.set()
            relay.publisher.close()
            store.close()


def test_a_live_replicas_records_are_anyones_after_the_grace_its_relay_had(mongodb_uri):
    """A relay cut off from the broker while its process lives on must not hold its events back
    for as long as that lasts."""
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        other = TransactionOwners(store.db, heartbeat_seconds=0.2)
        with store.client.start_session() as session:
            other.session_started(session)
        relay.other_relays_alive = lambda: [other.owner]  # alive throughout
        old = utc_now() - timedelta(seconds=LIVE_RELAY_GRACE_SECONDS + 1)
        young = utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS + 1)
        held, stuck = (CloudEvent(source=store.source, type="unit.updated", subject=s, data={}) for s in "hs")
        store.db.outbox.insert_many([outbox_record(ObjectId(), held.type, held.to_json_dict(), young, other.owner),
                                     outbox_record(ObjectId(), stuck.type, stuck.to_json_dict(), old, other.owner)])
        try:
            with listening(amqp_uri, store.source) as drain:
                relay.publish_leftovers()
                assert drain() == [stuck.id]
        finally:
            relay.publisher.close()
            store.close()


def test_a_restarted_relay_publishes_what_was_left_before_anything_new(mongodb_uri):
    """Records a crashed process left unpublished (just written, so no leftover yet) go out
    first, in outbox order, then what is committed after the start: nothing overtakes them."""
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        left = [CloudEvent(source=store.source, type="unit.updated", subject=f"old{i}", data={}) for i in range(3)]
        store.db.outbox.insert_many([{"_id": ObjectId(), "type": e.type, "envelope": e.to_json_dict(),
                                      "created_at": utc_now(), "published_at": None} for e in left])
        with listening(amqp_uri, store.source) as drain:
            relay.start(in_a_thread)
            try:
                new = emit(store, 2)
                wait_for(lambda: len(drain()) >= 5, what="the leftovers and the new events published")
            finally:
                relay.stop()
            assert drain() == [e.id for e in left] + new


def test_a_batch_the_broker_refuses_stays_in_the_outbox_until_it_is_taken(mongodb_uri):
    """A queue that refuses messages when full (reject-publish) makes the broker nack them: the
    relay must not mark such a batch published, and publishes it again once the broker takes it."""
    with rabbit_vhost() as amqp_uri:
        relay, store = relay_and_store(mongodb_uri, amqp_uri)
        with listening(amqp_uri, store.source) as drain, Connection(amqp_uri) as connection:
            full = Queue(f"full-{store.source}", exchange=Exchange(f"{store.source}.events", "topic", durable=True),
                         routing_key="#", queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
            full(connection.default_channel).declare()
            relay.start(in_a_thread)
            try:
                ids = emit(store, 3)
                failures = lambda: metric_value(generate_latest().decode(), "outbox_publish_failures_total",  # noqa: E731
                                                service=store.source)
                wait_for(lambda: (failures() or 0) >= 2, what="two refused publishes")
                assert store.db.outbox.count_documents({"published_at": None}) == 3

                full(connection.default_channel).delete()
                wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=10,
                         what="the batch taken and marked")
                # Each refused attempt also reached the open queue: consumers absorb repeats by id.
                received = drain()
                assert received[-3:] == ids and set(received) == set(ids)
            finally:
                relay.stop()


def test_events_published_but_not_marked_in_a_database_outage_go_out_again_and_consumers_drop_the_repeat(
        mongodb_uri, tmp_path):
    """Issue 16, item 8: the broker confirmed a batch, then the database went away before the
    relay marked it published. A relay that lives through the outage marks the batch once the
    database is back (it remembers what it published); one that goes away meanwhile (a stop, a
    crash) leaves the batch unmarked, and the next relay publishes it again at its catch-up:
    delivery is at least once, and a consumer's inbox applies each event once."""
    import subprocess
    import sys

    from platform_testing import free_port, mongo_ready

    port = free_port()
    config = tmp_path / "secantusd.toml"
    config.write_text("[storage]\nsync_on_commit = true\n")  # as make run: a commit survives a kill -9

    def start_database() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                                 "--storage-path", str(tmp_path / "db"), "--log-level", "WARNING",
                                 "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def failures(name: str) -> float:
        return metric_value(generate_latest().decode(), "outbox_publish_failures_total", service=name)

    database = start_database()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    consumer = Store(mongodb_uri, f"consumer{uuid.uuid4().hex[:6]}", "consumer")
    consumer.ensure_indexes()
    try:
        wait_for(lambda: mongo_ready(uri), timeout=30, what="SecantusDB")
        with rabbit_vhost() as amqp_uri:
            name = f"relay{uuid.uuid4().hex[:6]}"
            store = Store(uri, name, name, server_selection_timeout_ms=1000)
            store.ensure_indexes()

            def new_relay() -> OutboxRelay:
                relay = OutboxRelay(name, amqp_uri, poll_seconds=0.2)
                relay.outbox = store.db.outbox
                store._after_commit = relay.committed
                relay.start(in_a_thread)
                return relay

            received: list[dict] = []
            with Connection(amqp_uri) as connection:
                queue = Queue(f"q-{name}", exchange=Exchange(f"{name}.events", "topic", durable=True),
                              routing_key="#", auto_delete=True)
                queue(connection.default_channel).declare()

                def drain() -> list[dict]:
                    while (message := queue(connection.default_channel).get(no_ack=True)) is not None:
                        received.append(message.payload)
                    return received

                relay = new_relay()
                # Past its start-up catch-up: commits are handed over, published without the database.
                warm_up = emit(store, 1)
                wait_for(lambda: [e["id"] for e in drain()] == warm_up, timeout=20, what="the relay running")
                wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=20,
                         what="the warm-up event marked")
                received.clear()
                ids = emit(store, 3)
                database.kill()  # before the relay marks them published (MARK_DELAY_SECONDS)
                database.wait()
                wait_for(lambda: len(drain()) >= 3, timeout=20, what="the batch on the broker")
                before = failures(name)
                wait_for(lambda: failures(name) > before, timeout=20, what="the relay failing to mark the batch")
                assert relay.stop() is False  # it goes away with the batch published and unmarked
                database = start_database()
                wait_for(lambda: mongo_ready(uri), timeout=30, what="SecantusDB back")
                assert store.db.outbox.count_documents({"published_at": None}) == 3
                relay = new_relay()
                try:
                    wait_for(lambda: len(drain()) >= 6, timeout=30, what="the batch published again")
                    wait_for(lambda: store.db.outbox.count_documents({"published_at": None}) == 0, timeout=20,
                             what="the batch marked published")
                finally:
                    relay.stop()
            assert [e["id"] for e in received] == ids * 2
            applied = [consumer.apply_event("on_unit_updated", CloudEvent.model_validate(e),
                                            lambda uow: uow.db.applied.insert_one({}, session=uow.session))
                       for e in received]
            assert applied == [True] * 3 + [False] * 3 and consumer.db.applied.count_documents({}) == 3
            store.close()
    finally:
        consumer.close()
        database.kill()
        database.wait()
