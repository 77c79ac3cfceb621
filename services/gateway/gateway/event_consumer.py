"""The broker side: the gateway's queue bound to every other service's events, consumed into
the event log with the notifications each event gives rise to; invalid events dead-lettered."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import aio_pika
from opentelemetry.trace import SpanKind
from pymongo.errors import PyMongoError

from platform_contracts.envelope import CloudEvent
from platform_contracts.events import SOURCES, exchange_for, validate_event
from platform_contracts.problems import describe_invalid
from service_kit import topology, tracing
from service_kit.pii import redact_text

from .event_log import EventLog, LogEntry
from .fanout import Broadcaster
from .metrics import EVENTS_DUPLICATE, EVENTS_INVALID, EVENTS_RECEIVED, NOTIFICATIONS_CREATED
from .notifications import (NOTIFICATION_CREATED, NOTIFICATION_SOURCE, NotificationStore, outbox_records,
                            with_notifications)

log = logging.getLogger(__name__)

EVENTS_QUEUE = "gateway.events"
DEAD_LETTER_QUEUE = topology.dead_letter_queue_name(NOTIFICATION_SOURCE)  # gateway.dead-letters
BATCH_LIMIT = 100  # events appended to the log with one insert


async def declare_topology(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
    """The gateway's queue, bound to every other service's events exchange. The exchanges are
    declared here too (as nameko declares them: durable topic), so the binding holds before
    the services first start; the gateway's own, which its notifications are published to, too.

    Single active consumer: of several replicas, one at a time appends to the log, so log order
    is broker order (competing replicas would interleave their appends); the others stand by and
    take over if it goes, and every replica fans out from the shared log anyway."""
    queue = await channel.declare_queue(EVENTS_QUEUE, durable=True, arguments={"x-single-active-consumer": True})
    await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    for source in SOURCES:
        exchange = await channel.declare_exchange(exchange_for(source), aio_pika.ExchangeType.TOPIC, durable=True)
        if source == NOTIFICATION_SOURCE:
            # Notifications are logged where they are made: consumed back, each would cost a
            # refused insert, or once out of retention be logged twice. Earlier versions bound it.
            await queue.unbind(exchange, routing_key="#")
        else:
            await queue.bind(exchange, routing_key="#")
    return queue


class EventConsumer:
    """Consumes every service's events into the log in the order the broker delivered them,
    each followed by the notifications it gives rise to.

    Whatever has been delivered by the time the log is free is appended as one batch (a lone
    event at once, never waiting for more), and acked only once it is logged. The prefetch holds
    a second batch, so the next one arrives while the current one is being written. The outbox
    records of the notifications go to `outbox_committed` (the relay) once committed."""

    def __init__(self, amqp_uri: str, event_log: EventLog, broadcaster: Broadcaster,
                 notifications: NotificationStore, outbox_committed: Callable[[list[dict]], None]):
        self.amqp_uri = amqp_uri
        self.log = event_log
        self.broadcaster = broadcaster
        self.notifications = notifications
        self.outbox_committed = outbox_committed
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._task: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_uri, client_properties={
            "connection_name": "gateway events"})
        channel = self._channel = await self._connection.channel()  # confirms publishes (dead letters)
        await channel.set_qos(prefetch_count=2 * BATCH_LIMIT)
        queue = await declare_topology(channel)
        self._task = asyncio.create_task(self._consume(queue), name="event-consumer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection:
            await self._connection.close()

    async def _consume(self, queue: aio_pika.abc.AbstractQueue) -> None:
        delivered: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(delivered.put)
        while True:
            batch = [await delivered.get()]
            while len(batch) < BATCH_LIMIT and not delivered.empty():
                batch.append(delivered.get_nowait())
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The consumer must not die quietly holding the queue (it has a single active
                # consumer): give the batch back to the broker and try again shortly.
                log.exception("handling %d events failed; they go back to the queue", len(batch))
                with contextlib.suppress(Exception):
                    await batch[-1].nack(requeue=True, multiple=True)
                await asyncio.sleep(1)

    async def handle(self, messages: list[aio_pika.abc.AbstractIncomingMessage]) -> None:
        started_ns = time.time_ns()
        received = []
        for message in messages:
            try:
                received.append(validate_event(json.loads(message.body)))
            except ValueError as exc:  # includes JSON, Unicode and pydantic validation errors
                # The refusal quotes what it refused (an unknown type, a wrong source): masked too.
                await self._dead_letter(message, redact_text(f"invalid event: {describe_invalid(exc)}"))
        events = with_notifications(received)
        entries = await self._append(events) if events else []
        logged = [entry for entry in entries if entry is not None]
        if records := outbox_records(logged):
            self.outbox_committed(records)
        # Every earlier delivery on the channel is in this batch or acked already, so one
        # multiple-ack of the last covers the batch.
        await messages[-1].ack(multiple=True)
        for event, entry in zip(events, entries):
            if event.type == NOTIFICATION_CREATED:
                NOTIFICATIONS_CREATED.inc(entry is not None)
            elif entry is None:
                EVENTS_DUPLICATE.inc()
            else:
                EVENTS_RECEIVED.labels(event.source).inc()
        self.broadcaster.deliver_logged(logged)
        for event in received:  # each event's trace shows it reaching the log and the streams
            tracing.record(f"gateway.consume {event.type}", traceparent=event.traceparent, start_ns=started_ns,
                           kind=SpanKind.CONSUMER, attributes={"messaging.message.id": event.id,
                                                               "messaging.batch.message_count": len(received)})

    async def _append(self, events: list[CloudEvent]) -> list[LogEntry | None]:
        while True:
            try:
                # Only notifications need storing beside their log entries, in one transaction.
                notifying = any(event.type == NOTIFICATION_CREATED for event in events)
                return await self.log.append_batch(events, on_logged=self.notifications.record if notifying else None)
            except PyMongoError:
                # Keep the messages (and everything after them) until the log can take them.
                log.warning("appending %d events to the log failed; retrying", len(events), exc_info=True)
                await asyncio.sleep(1)

    async def _dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, error: str) -> None:
        """An invalid event goes where the services put theirs, for an operator to see and
        replay (no retry: it would fail the same way). Confirmed before the batch is acked; a
        batch that then fails is given back whole, so its invalid events may be listed twice."""
        await self._channel.default_exchange.publish(
            aio_pika.Message(message.body, content_type=message.content_type, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                             headers=topology.failure_headers(EVENTS_QUEUE, error, attempt=1, dead_letter=True)),
            routing_key=DEAD_LETTER_QUEUE)
        EVENTS_INVALID.inc()
        log.warning("dead-lettered an invalid event from %s (%s): %s", message.exchange,
                    redact_text(message.routing_key or ""), error)
