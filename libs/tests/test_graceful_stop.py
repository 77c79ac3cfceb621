"""A service stopped by a signal while it is busy (a pod's SIGTERM; Ctrl-C under `make run`,
which also brings run_platform's SIGTERM) exits 0 within 10 s, and nothing is lost or doubled:
the calls its workers had taken up are finished, committed and answered by it, their events
published before it exits; the calls it had not taken up stay on the queue, and a replica
started afterwards answers them. A real service process, RabbitMQ vhost and SecantusDB."""

import signal
import subprocess
import threading
import uuid
from collections import Counter
from pathlib import Path

import pymongo
import pytest
from kombu import Connection

from platform_contracts.envelope import CloudEvent
from platform_testing import EventTap, ServiceProcess, free_port, mongodb_server, rabbit_vhost, rpc_cluster, wait_for
from platform_testing.actors import actor_env
from service_kit.outbox import OutboxRelay
from service_kit.store import Store

pytestmark = pytest.mark.timeout(180)

SERVICE = "stopper"  # stop_service.py
WORKERS = 4
CALLS = 12  # three rounds of WORKERS calls
WORK_SECONDS = 3.0  # each call, before it commits: longer than nameko takes to close its consumer connection
STOP_WITHIN_SECONDS = 10.0  # the grace period: a process still running then is killed, as supervisors do


@pytest.fixture(scope="module")
def mongodb_uri():
    with mongodb_server() as uri:
        yield uri


@pytest.fixture
def platform(tmp_path, mongodb_uri):
    """A vhost and a database of the test's own; `replica()` starts one more service process."""
    database = f"stopper_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongodb_uri)
    started: list[ServiceProcess] = []
    with rabbit_vhost() as amqp_uri:
        def replica() -> ServiceProcess:
            port = free_port()
            process = ServiceProcess(SERVICE, {
                "MONGODB_URI": mongodb_uri, "MONGODB_STOPPER_DB": database, "AMQP_URI": amqp_uri,
                "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "MAX_WORKERS": str(WORKERS),
                "OUTBOX_POLL_SECONDS": "0.5", **actor_env(),
            }, port, str(tmp_path / f"replica{len(started) + 1}.log"),
                script=str(Path(__file__).with_name("stop_service.py")))
            started.append(process)
            return process.start()

        try:
            yield {"amqp_uri": amqp_uri, "db": client[database], "replica": replica, "logs": tmp_path}
        finally:
            for process in started:
                if process.process is not None and process.process.poll() is None:
                    process.kill()
            client.close()


def stop(service: ServiceProcess, signals: list[signal.Signals]) -> int | None:
    """Send `signals` (at once, as a terminal's Ctrl-C and run_platform's SIGTERM arrive) and
    wait out the grace period; the exit code, None if it had to be killed at its end."""
    for sig in signals:
        service.process.send_signal(sig)
    try:
        return service.process.wait(STOP_WITHIN_SECONDS)
    except subprocess.TimeoutExpired:
        service.kill()
        return None


def queue_depth(amqp_uri: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of `queue`."""
    with Connection(amqp_uri) as connection:
        _, ready, consumers = connection.default_channel.queue_declare(queue, passive=True)
    return ready, consumers


def keys_of(collection) -> Counter:
    return Counter(document["key"] for document in collection.find({}, {"key": 1}))


def log_tail(platform, replica: int) -> str:
    return (platform["logs"] / f"replica{replica}.log").read_text()[-3000:]


@pytest.mark.parametrize("signals", [
    pytest.param([signal.SIGTERM], id="pod-SIGTERM"),
    pytest.param([signal.SIGINT, signal.SIGTERM], id="make-run-Ctrl-C"),
])
def test_a_busy_service_stops_cleanly_in_time_and_loses_nothing(platform, signals):
    amqp_uri, db = platform["amqp_uri"], platform["db"]
    tap = EventTap(amqp_uri, f"{SERVICE}.events")
    first = platform["replica"]()
    keys = [f"call-{i:02d}" for i in range(CALLS)]
    try:
        with rpc_cluster(amqp_uri, timeout=60) as proxy:
            calls = {key: proxy[SERVICE].write.call_async(key, WORK_SECONDS) for key in keys}
            # The first round committed; the second has been taken up and is in flight.
            wait_for(lambda: db.writes.count_documents({}) >= WORKERS
                     and db.started.count_documents({}) >= 2 * WORKERS,
                     timeout=30, what="a round done and the next in flight")
            in_flight = set(keys_of(db.started)) - set(keys_of(db.writes))
            assert in_flight, "the signal must find calls in flight"

            code = stop(first, signals)

            assert code == 0, f"exit code {code} (None: killed after the grace period):\n{log_tail(platform, 1)}"
            # What its workers took up, they finished: each call once, written once, answered.
            started, written = keys_of(db.started), keys_of(db.writes)
            assert set(written) == set(started) and in_flight <= set(written)
            assert max(started.values()) == 1 and max(written.values()) == 1
            for key in written:
                assert calls[key].result() == {"key": key, "pid": first.process.pid}
            # ... and published their events before it exited.
            assert db.outbox.count_documents({"published_at": None}) == 0
            assert Counter(e["subject"] for e in tap.drain()) == Counter(written)
            # What they had not taken up is still on the queue, for another replica.
            assert queue_depth(amqp_uri, f"rpc-{SERVICE}") == (CALLS - len(written), 0)

            second = platform["replica"]()
            rest = {key: calls[key].result() for key in keys if key not in written}
            assert rest == {key: {"key": key, "pid": second.process.pid} for key in rest}

            assert stop(second, [signal.SIGTERM]) == 0, f"second replica:\n{log_tail(platform, 2)}"
            tap.drain()
    finally:
        tap.close()

    # Nothing lost, nothing doubled: every call executed, written and published exactly once.
    assert keys_of(db.started) == keys_of(db.writes) == Counter(keys)
    assert db.outbox.count_documents({}) == CALLS
    assert db.outbox.count_documents({"published_at": None}) == 0
    assert Counter(e["subject"] for e in tap.seen) == Counter(keys)
    assert queue_depth(amqp_uri, f"rpc-{SERVICE}") == (0, 0)
    # Both replicas' timers ran until they stopped.
    assert db.ticks.count_documents({}) == 2


def test_a_stopping_relay_publishes_what_was_committed_before_the_stop(mongodb_uri):
    """The relay is stopped once nothing commits any more (after the workers, in a service; after
    the event consumer, in the gateway): what was committed just before is published and marked
    before stop() returns, not left for the next start or another replica's poll."""
    with rabbit_vhost() as amqp_uri:
        for attempt in range(10):
            source = f"relay{uuid.uuid4().hex[:6]}"
            relay = OutboxRelay(source, amqp_uri, poll_seconds=30)
            store = Store(mongodb_uri, source, source, after_commit=relay.committed)
            relay.outbox = store.db.outbox
            tap = EventTap(amqp_uri, f"{source}.events")
            try:
                relay.start(lambda run: threading.Thread(target=run, daemon=True).start())
                first = emit(store)
                wait_for(lambda: [e["id"] for e in tap.drain()] == first, what="the relay running")
                last = emit(store) + emit(store)

                assert relay.stop() is True

                assert store.db.outbox.count_documents({"published_at": None}) == 0, f"attempt {attempt}"
                wait_for(lambda: len(tap.drain()) >= 3, timeout=5, what="the last events")
                assert [e["id"] for e in tap.seen] == first + last
            finally:
                tap.close()
                store.close()


def emit(store: Store) -> list[str]:
    event = CloudEvent(source=store.source, type="unit.updated", subject="s", data={})
    store.transaction(lambda uow: uow.events.append(event))
    return [event.id]
