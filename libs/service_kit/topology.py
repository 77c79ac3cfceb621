"""RabbitMQ topology for failed event deliveries: delayed retries and a dead-letter queue.

A failed delivery is republished to `<service>.retry.<N>s`, a queue with a message TTL of N
seconds whose dead-letter exchange is the default exchange: when the TTL runs out RabbitMQ
routes the message, by its routing key (the handler's queue name), back to the handler. One
queue per delay avoids the head-of-line blocking of per-message TTLs. After the last attempt
the message goes to `<service>.dead-letters`, where an operator can list and replay it."""

import contextlib
import json
import logging
from datetime import datetime, timezone

from kombu import Connection, Exchange, Queue
from prometheus_client import Gauge

from .pii import redact

log = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = Gauge("dead_letter_queue_messages", "Messages waiting in the dead-letter queue", ["service"])

ATTEMPT_HEADER = "x-attempt"
ORIGINAL_QUEUE_HEADER = "x-original-queue"


def retry_exchange_name(service: str, delay: int) -> str:
    return f"{service}.retry.{delay}s"


def dead_letter_queue_name(service: str) -> str:
    return f"{service}.dead-letters"


def declarations(service: str, delays: list[int]) -> list:
    objects = []
    for delay in delays:
        exchange = Exchange(retry_exchange_name(service, delay), type="fanout", durable=True)
        objects.append(exchange)
        objects.append(Queue(
            retry_exchange_name(service, delay), exchange=exchange, durable=True,
            queue_arguments={"x-message-ttl": delay * 1000, "x-dead-letter-exchange": ""},
        ))
    objects.append(Queue(dead_letter_queue_name(service), durable=True))
    return objects


def declare(amqp_uri: str, service: str, delays: list[int]) -> None:
    with Connection(amqp_uri) as conn:
        channel = conn.default_channel
        for obj in declarations(service, delays):
            obj.maybe_bind(channel)
            obj.declare()


def failure_headers(original_queue: str, error: str, attempt: int, dead_letter: bool = False) -> dict:
    """What a retried or dead-lettered message carries besides itself: where it failed, why,
    which attempt it was (and when it was given up on)."""
    headers = {ATTEMPT_HEADER: attempt, ORIGINAL_QUEUE_HEADER: original_queue, "x-error": error[:2000]}
    if dead_letter:
        headers["x-dead-lettered-at"] = datetime.now(timezone.utc).isoformat()
    return headers


def count_dead_letters(amqp_uri: str, service: str) -> None:
    """Sets the dead-letter gauge of `service` (on the outbox relay's gauge schedule)."""
    DEAD_LETTER_QUEUE.labels(service).set(dead_letter_count(amqp_uri, service))


def dead_letter_count(amqp_uri: str, service: str) -> int:
    with Connection(amqp_uri, connect_timeout=2) as conn:
        _, count, _ = Queue(dead_letter_queue_name(service), durable=True)(conn.default_channel).queue_declare()
        return count


def _describe(message) -> dict:
    """A dead letter as an operator sees it; personal data in it masked (see pii.redact)."""
    headers = message.headers or {}
    try:
        body = json.loads(message.body)
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = None
    return {
        "message_id": message.properties.get("message_id") or (body or {}).get("id"),
        "type": redact((body or {}).get("type")),
        "queue": headers.get(ORIGINAL_QUEUE_HEADER),
        "attempts": headers.get(ATTEMPT_HEADER),
        "error": redact(headers.get("x-error")),
        "dead_lettered_at": headers.get("x-dead-lettered-at"),
        "event": redact(body),
    }


def list_dead_letters(amqp_uri: str, service: str, limit: int = 100) -> list[dict]:
    """Peek without consuming: fetch unacknowledged, then close so RabbitMQ requeues them."""
    items = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        queue = Queue(dead_letter_queue_name(service), durable=True)(channel)
        while len(items) < limit:
            message = queue.get(no_ack=False)
            if message is None:
                break
            items.append(_describe(message))
        with contextlib.suppress(Exception):
            channel.close()
    return items


def replay_dead_letters(amqp_uri: str, service: str, message_ids: list[str] | None = None) -> int:
    """Send dead letters back to the queue they failed on, with a fresh attempt count."""
    replayed = 0
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        channel.confirm_select()
        queue = Queue(dead_letter_queue_name(service), durable=True)(channel)
        # Only those there now: one that fails again at once and comes back is not taken again
        # in this pass (replayed twice, or back and forth for as long as the pass keeps up).
        _, waiting, _ = queue.queue_declare()
        skipped = []
        for _ in range(waiting):
            message = queue.get(no_ack=False)
            if message is None:
                break
            info = _describe(message)
            if message_ids is not None and info["message_id"] not in message_ids:
                skipped.append(message)
                continue
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            headers["x-replayed-at"] = datetime.now(timezone.utc).isoformat()
            channel.basic_publish(
                channel.prepare_message(
                    message.body, properties={"message_id": info["message_id"], "delivery_mode": 2},
                    content_type=message.content_type, content_encoding=message.content_encoding,
                    headers=headers,
                ),
                exchange="", routing_key=info["queue"],
            )
            message.ack()
            replayed += 1
        for message in skipped:
            message.reject(requeue=True)
    log.info("replayed %d dead letter(s) of %s", replayed, service)
    return replayed
