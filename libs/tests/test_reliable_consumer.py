"""The kit's event consumption against real RabbitMQ and SecantusDB: a failing handler is
retried with backoff, then dead-lettered; an operator replays it; nothing is applied twice."""

import json
import uuid
from pathlib import Path

import pymongo
import pytest
from kombu import Connection, Exchange, Producer
from nameko.exceptions import get_module_path, registry

from platform_contracts.problems import Rejected
from platform_testing import ServiceProcess, free_port, metric_value, mongodb_server, rabbit_vhost, rpc_cluster, wait_for
from platform_testing.actors import actor_env

registry[get_module_path(Rejected)] = Rejected
ADMIN = {"username": "admin", "role": "admin", "scope": None}
RETRY_DELAYS = [1, 2]


@pytest.fixture(scope="module")
def flaky(tmp_path_factory):
    with mongodb_server() as mongodb_uri, rabbit_vhost() as amqp_uri:
        database = f"flaky_{uuid.uuid4().hex[:6]}"
        port = free_port()
        service = ServiceProcess("flaky", {
            "MONGODB_URI": mongodb_uri, "MONGODB_FLAKY_DB": database, "AMQP_URI": amqp_uri,
            "HTTP_PORT": str(port), "EVENT_MAX_ATTEMPTS": "3",
            "EVENT_RETRY_DELAYS_SECONDS": ",".join(map(str, RETRY_DELAYS)), **actor_env(),
        }, port, str(tmp_path_factory.mktemp("logs") / "flaky.log"),
            script=str(Path(__file__).with_name("flaky_service.py")))
        service.start()
        client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
        with rpc_cluster(amqp_uri, timeout=30) as proxy:
            yield service, client[database], amqp_uri, proxy.flaky
        client.close()
        service.stop()


def publish(amqp_uri, fail_times: int, **data) -> str:
    event_id = uuid.uuid4().hex
    envelope = {"specversion": "1.0", "id": event_id, "source": "member", "type": "member.updated",
                "time": "2026-11-22T08:00:00+00:00", "data": {"fail_times": fail_times, **data}}
    with Connection(amqp_uri) as connection:
        exchange = Exchange("member.events", "topic", durable=True)
        Producer(connection.default_channel, exchange=exchange).publish(
            json.dumps(envelope), routing_key="member.updated", content_type="application/json",
            message_id=event_id, declare=[exchange])
    return event_id


def attempts_of(database, event_id) -> list:
    document = database.attempts.find_one({"_id": event_id})
    return document["at"] if document else []


def test_transient_failures_are_retried_with_backoff(flaky):
    service, database, amqp_uri, _ = flaky
    event_id = publish(amqp_uri, fail_times=2)
    wait_for(lambda: database.applied.find_one({"_id": event_id}), timeout=30, what="event applied")
    at = attempts_of(database, event_id)
    assert len(at) == 3
    gaps = [(b - a).total_seconds() for a, b in zip(at, at[1:])]
    assert gaps[0] >= RETRY_DELAYS[0] * 0.9 and gaps[1] >= RETRY_DELAYS[1] * 0.9
    assert database.applied.find_one({"_id": event_id})["times"] == 1
    assert metric_value(service.metrics(), "event_handler_retries_total", handler="on_member_updated") >= 2


def test_exhausted_events_are_dead_lettered_then_replayed_once(flaky):
    service, database, amqp_uri, rpc = flaky
    event_id = publish(amqp_uri, fail_times=3)
    letters = wait_for(lambda: [d for d in rpc.list_dead_letters(100, actor=ADMIN)["items"]
                                if d["message_id"] == event_id], timeout=30, what="dead letter")
    assert letters[0]["attempts"] == 3 and "deliberate failure 3" in letters[0]["error"]
    assert database.applied.find_one({"_id": event_id}) is None
    # Listing does not consume: the letter is still there for the operator.
    assert any(d["message_id"] == event_id for d in rpc.list_dead_letters(100, actor=ADMIN)["items"])
    wait_for(lambda: metric_value(service.metrics(), "dead_letter_queue_messages", service="flaky") >= 1,
             timeout=15, what="dead-letter gauge")

    assert rpc.replay_dead_letters([event_id], actor=ADMIN) == {"replayed": 1}
    wait_for(lambda: database.applied.find_one({"_id": event_id}), timeout=15, what="replayed event applied")
    assert not any(d["message_id"] == event_id for d in rpc.list_dead_letters(100, actor=ADMIN)["items"])

    assert rpc.replay_dead_letters(None, actor=ADMIN) == {"replayed": 0}
    assert database.applied.find_one({"_id": event_id})["times"] == 1


def test_replay_is_for_admins_only(flaky):
    _, _, _, rpc = flaky
    with pytest.raises(Rejected) as caught:
        rpc.replay_dead_letters(None, actor={"username": "o", "role": "operator", "scope": "37"})
    assert caught.value.status == 403


def test_personal_data_in_a_refused_event_is_masked_in_the_listing_and_the_log(flaky):
    """An event carrying a plaintext phone and ID number breaks the catalogue and is
    dead-lettered at once; neither the operator's listing nor the log shows them in full."""
    service, _, amqp_uri, rpc = flaky
    phone, id_number = "13912345678", "11010519491231002X"
    event_id = publish(amqp_uri, fail_times=0, phone=phone, note=f"ID {id_number}, call {phone}")
    [letter] = wait_for(lambda: [d for d in rpc.list_dead_letters(100, actor=ADMIN)["items"]
                                 if d["message_id"] == event_id], timeout=30, what="dead letter")
    assert letter["attempts"] == 1 and "invalid event" in letter["error"]
    listed = json.dumps(letter)
    assert phone not in listed and id_number not in listed
    assert letter["event"]["data"]["phone"] == "139****5678"
    assert letter["event"]["data"]["note"] == "ID **************002X, call 139****5678"
    log = Path(service.log_path).read_text()
    assert event_id in log and phone not in log and id_number not in log


def test_a_replay_takes_each_dead_letter_once_even_when_it_comes_straight_back():
    """Dead letters whose queue sends them straight back to the dead letters (here: their
    queue is the dead-letter queue itself) are replayed once each, not for as long as the
    replay keeps up with them."""
    from service_kit import topology

    with rabbit_vhost() as amqp_uri:
        topology.declare(amqp_uri, "bouncing", RETRY_DELAYS)
        dead_letters = topology.dead_letter_queue_name("bouncing")
        with Connection(amqp_uri) as connection:
            producer = Producer(connection.default_channel)
            for _ in range(3):
                producer.publish(json.dumps({"id": uuid.uuid4().hex}), routing_key=dead_letters,
                                 message_id=uuid.uuid4().hex,
                                 headers=topology.failure_headers(dead_letters, "fails", 3, dead_letter=True))
        assert topology.replay_dead_letters(amqp_uri, "bouncing") == 3
        assert topology.dead_letter_count(amqp_uri, "bouncing") == 3
