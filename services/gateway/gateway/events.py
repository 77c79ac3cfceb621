"""Live events: the broker consumer, the retained event log, and the fan-out to clients.

Every event is appended to the log in the gateway's MongoDB with a sequence number from an
atomic counter; the log position is the SSE `id:`. Fan-out reads from the log, not from the
broker, so every replica delivers every event (the replicas compete on the one broker queue)
and a client resuming from `Last-Event-ID` gets the same order on any replica."""

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aio_pika
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, PyMongoError

from platform_contracts.codes import normalize_division_prefix
from platform_contracts.envelope import CloudEvent
from platform_contracts.events import SOURCES, exchange_for, validate_event
from platform_contracts.problems import describe_invalid
from service_kit import topology

from .auth import DIVISION_ROLES, OPERATOR, Principal
from .metrics import EVENTS_DUPLICATE, EVENTS_INVALID, EVENTS_RECEIVED, EVENTS_SKIPPED, NOTIFICATIONS_CREATED
from .notifications import (NOTIFICATION_CREATED, NOTIFICATION_SOURCE, NotificationStore, addressed_to, outbox_records,
                            with_notifications)

log = logging.getLogger(__name__)

EVENTS_QUEUE = "gateway.events"
DEAD_LETTER_QUEUE = topology.dead_letter_queue_name(NOTIFICATION_SOURCE)  # gateway.dead-letters
MAX_TYPE_PATTERNS = 32
REPLAY_PAGE = 500
CLIENT_BUFFER = 10_000
PURGE_BATCH = 1000
BATCH_LIMIT = 100  # events appended to the log with one insert


# ---- filters --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogEntry:
    seq: int
    type: str
    division: str | None
    envelope: dict


@dataclass(frozen=True)
class StreamGap:
    """The events after `last_event_id` that a client asked for are gone from the log (past
    EVENT_LOG_RETENTION_HOURS): it resumes after `resumed_after` and should reload what it shows."""

    last_event_id: int
    resumed_after: int


@dataclass(frozen=True)
class EventFilter:
    """Which events a client receives: `types` are glob patterns (any may match; none = all),
    `division` a prefix of the event's `division` extension. With a `reader`, notifications are
    only those addressed to them (and pass the division filter when they carry no division),
    and other events only reach the roles that see division-scoped records."""

    types: tuple[str, ...] = ()
    division: str | None = None
    reader: Principal | None = None

    def matches(self, entry: LogEntry) -> bool:
        if self.types and not any(fnmatch.fnmatchcase(entry.type, p) for p in self.types):
            return False
        if entry.type == NOTIFICATION_CREATED:
            audience = entry.envelope.get("data", {}).get("audience") or {}
            if self.reader is not None and not addressed_to(audience, self.reader):
                return False
            return entry.division is None or self._in_division(entry)
        if self.reader is not None and self.reader.role not in DIVISION_ROLES:
            return False
        return self._in_division(entry)

    def _in_division(self, entry: LogEntry) -> bool:
        if self.division is None:
            return True
        other = entry.envelope.get("otherdivision")
        return (entry.division or "").startswith(self.division) or bool(other and other.startswith(self.division))


def parse_types(raw: str | list | None) -> tuple[str, ...]:
    """Type patterns from `a.*,b.c` or a list; ValueError saying what is wrong."""
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ValueError("types is a list of strings")
    patterns = tuple(dict.fromkeys(p.strip() for p in items if p.strip()))
    if len(patterns) > MAX_TYPE_PATTERNS:
        raise ValueError(f"at most {MAX_TYPE_PATTERNS} type patterns")
    bad = [p for p in patterns if len(p) > 100 or not all(c.isalnum() or c in "._-*?[]!" for c in p)]
    if bad:
        raise ValueError(f"not a type pattern: {bad[0]!r}")
    return patterns


def parse_division(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("a division filter is a string of digits")
    return normalize_division_prefix(raw)


def envelope_for(entry: "LogEntry", reader: Principal) -> dict:
    """The event as `reader` may see it. A coverage.changed also carries the figures of the
    divisions above its own (district, city, all); an operator gets only those in their scope,
    as `GET /coverage` would give them."""
    if entry.type != "coverage.changed" or reader.role != OPERATOR:
        return entry.envelope
    data = entry.envelope.get("data") or {}
    scopes = data.get("scopes")
    if not isinstance(scopes, list):
        return entry.envelope
    visible = [s for s in scopes if isinstance(s, dict) and str(s.get("division") or "").startswith(reader.scope)]
    return {**entry.envelope, "data": {**data, "scopes": visible}}


# ---- the event log --------------------------------------------------------------------------

def _entry(doc: dict) -> LogEntry:
    return LogEntry(seq=doc["seq"], type=doc["type"], division=doc.get("division"), envelope=doc["envelope"])


def _log_doc(seq: int, event: CloudEvent) -> dict:
    return {"seq": seq, "event_id": event.id, "type": event.type, "division": event.division, "time": event.time,
            "logged_at": datetime.now(timezone.utc), "envelope": event.to_json_dict()}


OnLogged = Callable[[list[LogEntry], AsyncClientSession], Awaitable[None]]


class EventLog:
    """The retained log. Positions are handed out by the one writer (the active consumer) from
    memory: the unique index on `seq` is the guard, so a writer whose idea of the next position
    is stale (another replica wrote meanwhile) collides, reloads it and tries again. It reloads
    anyway before writing after a pause: a replica that stood by while others wrote and purged
    could otherwise write below the purged positions without colliding."""

    RELOAD_AFTER_IDLE_SECONDS = 1.0

    def __init__(self, db: AsyncDatabase):
        self.client = db.client
        self.collection = db["event_log"]
        self._next_seq: int | None = None
        self._appended_at = 0.0

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("seq", ASCENDING)], unique=True, name="seq_unique")
        await self.collection.create_index([("event_id", ASCENDING)], unique=True, name="event_id_unique")
        # Retention walks the seq index instead, so no insert pays for a logged_at index.
        if "logged_at" in await self.collection.index_information():
            await self.collection.drop_index("logged_at")

    async def append(self, event: CloudEvent) -> LogEntry | None:
        """Log the event under the next sequence number; None if it is already logged."""
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: list[CloudEvent], on_logged: OnLogged | None = None,
                           ) -> list[LogEntry | None]:
        """Log the events, in order, under consecutive sequence numbers; for each event its
        entry, or None if it is already logged (before, or earlier in this batch).

        With `on_logged` (it stores what the entries give rise to, the notifications), one
        transaction: the insert and `on_logged`, undone as a whole. Without, one ordered insert:
        what it wrote before a refusal stands, and the rest is tried again, so positions stay
        dense either way (a crash in between leaves a prefix logged, and the redelivery logs
        the rest). Events are rarely logged already (a redelivery after a crash): the insert is
        tried first, and only when the event-id index refuses one is it left out."""
        if on_logged is None:
            return await self._append_each(events)
        skip_logged = False
        while True:
            await self._reload_position_if_stale()
            try:
                async with self.client.start_session() as session:
                    results = await session.with_transaction(
                        lambda s: self._append_batch(events, on_logged, s, skip_logged))
            except BulkWriteError as exc:
                refused = {_refused_index(error) for error in exc.details["writeErrors"]}
                if not refused <= {"seq_unique", "event_id_unique"}:
                    raise
                skip_logged = skip_logged or "event_id_unique" in refused
                if "seq_unique" in refused:  # another replica wrote meanwhile
                    self._next_seq = None
                continue
            self._advance(sum(entry is not None for entry in results))
            return results

    async def _append_each(self, events: list[CloudEvent]) -> list[LogEntry | None]:
        results: list[LogEntry | None] = [None] * len(events)
        first_index_by_id: dict[str, int] = {}
        for index, event in enumerate(events):
            first_index_by_id.setdefault(event.id, index)
        pending = list(first_index_by_id.values())
        while pending:
            await self._reload_position_if_stale()
            docs = [_log_doc(self._next_seq + n, events[i]) for n, i in enumerate(pending)]
            refused = None
            try:
                await self.collection.insert_many(docs, ordered=True)
                inserted = len(docs)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                refused = _refused_index(errors[0]) if errors else None
                if refused is None:  # not a duplicate (a write-concern error, say): retried as a whole
                    raise PyMongoError(f"appending to the event log failed: {exc}") from exc
                inserted = exc.details["nInserted"]
            for i, doc in zip(pending, docs[:inserted]):
                results[i] = _entry(doc)
            self._advance(inserted)
            if refused == "event_id_unique":  # logged before: left out
                pending = pending[inserted + 1:]
            elif refused == "seq_unique":  # another replica wrote meanwhile
                self._next_seq = None
                pending = pending[inserted:]
            else:
                pending = []
        return results

    async def _reload_position_if_stale(self) -> None:
        if self._next_seq is None or time.monotonic() - self._appended_at > self.RELOAD_AFTER_IDLE_SECONDS:
            self._next_seq = await self.last_seq() + 1

    def _advance(self, count: int) -> None:
        self._next_seq += count
        self._appended_at = time.monotonic()

    async def _append_batch(self, events: list[CloudEvent], on_logged: OnLogged | None,
                            session: AsyncClientSession, skip_logged: bool) -> list[LogEntry | None]:
        first_index_by_id: dict[str, int] = {}
        for index, event in enumerate(events):
            first_index_by_id.setdefault(event.id, index)
        logged_ids = set()
        if skip_logged:
            already_logged = await self.collection.find(
                {"event_id": {"$in": list(first_index_by_id)}}, {"event_id": 1, "_id": 0}, session=session).to_list()
            logged_ids = {doc["event_id"] for doc in already_logged}
        fresh = [i for i in first_index_by_id.values() if events[i].id not in logged_ids]
        results: list[LogEntry | None] = [None] * len(events)
        if not fresh:
            return results
        docs = [_log_doc(self._next_seq + n, events[i]) for n, i in enumerate(fresh)]
        await self.collection.insert_many(docs, ordered=True, session=session)
        for i, doc in zip(fresh, docs):
            results[i] = _entry(doc)
        if on_logged is not None:
            await on_logged([entry for entry in results if entry is not None], session)
        return results

    async def after(self, seq: int, limit: int, upto: int | None = None) -> list[LogEntry]:
        bounds = {"$gt": seq} if upto is None else {"$gt": seq, "$lte": upto}
        docs = await self.collection.find({"seq": bounds}).sort("seq", ASCENDING).limit(limit).to_list()
        return [_entry(doc) for doc in docs]

    async def last_seq(self) -> int:
        doc = await self.collection.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return doc["seq"] if doc else 0

    async def purge(self, older_than: datetime) -> int:
        """Remove the entries logged before `older_than`. One writer at a time appends, so the
        log is in logged_at order: walk it from its start along the seq index to the last one."""
        last_expired = None
        oldest_first = self.collection.find({}, {"seq": 1, "logged_at": 1, "_id": 0}).sort("seq", ASCENDING)
        async with oldest_first.batch_size(PURGE_BATCH) as cursor:
            async for doc in cursor:
                if doc["logged_at"] >= older_than:
                    break
                last_expired = doc["seq"]
        if last_expired is None:
            return 0
        # The newest entry stays whatever its age: it is where the next position is read from.
        last_expired = min(last_expired, await self.last_seq() - 1)
        result = await self.collection.delete_many({"seq": {"$lte": last_expired}})
        return result.deleted_count


def _refused_index(write_error: dict) -> str | None:
    """The unique index a duplicate-key write error names, if that is what it is."""
    if write_error.get("code") != 11000:
        return None
    pattern = write_error.get("keyPattern") or {}
    if "seq" in pattern or "seq_unique" in write_error.get("errmsg", ""):
        return "seq_unique"
    if "event_id" in pattern or "event_id_unique" in write_error.get("errmsg", ""):
        return "event_id_unique"
    return None


# ---- fan-out --------------------------------------------------------------------------------

class Subscription:
    """One connected client: its filter and a buffer of live entries after `start_after`."""

    def __init__(self, event_filter: EventFilter, start_after: int):
        self.filter = event_filter
        self.start_after = start_after
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue()

    def offer(self, entry: LogEntry | None) -> None:
        if entry is not None and not self.filter.matches(entry):
            return
        if self._queue.qsize() >= CLIENT_BUFFER:
            # A client this far behind is cut off; it resumes from its Last-Event-ID.
            log.warning("a live-event client fell %d events behind; closing its stream", CLIENT_BUFFER)
            while not self._queue.empty():
                self._queue.get_nowait()
            entry = None
        self._queue.put_nowait(entry)

    async def next(self) -> LogEntry | None:
        """The next live entry, or None when the stream must end."""
        return await self._queue.get()


class Broadcaster:
    """Delivers log entries to subscriptions strictly in sequence order.

    Woken at once after a local append, and polling for entries other replicas wrote. A
    sequence number can be missing for a moment (allocated by a replica that has not inserted
    yet) or for ever (a writer that died in between): wait up to `gap_wait` for it, then skip."""

    def __init__(self, event_log: EventLog, poll_interval: float = 0.25, gap_wait: float = 1.0):
        self.log = event_log
        self.poll_interval = poll_interval
        self.gap_wait = gap_wait
        self.delivered = 0
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._gap_since: float | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.delivered = await self.log.last_seq()
        self._task = asyncio.create_task(self._run(), name="event-broadcaster")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for subscription in self._subscriptions:
            subscription.offer(None)

    def notify(self) -> None:
        self._wake.set()

    def subscribe(self, event_filter: EventFilter) -> Subscription:
        # No await here: registering and reading `delivered` happen together, so the
        # subscription receives exactly the entries after `start_after`.
        subscription = Subscription(event_filter, self.delivered)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def stream(self, subscription: Subscription,
                     last_event_id: int | None) -> AsyncIterator[LogEntry | StreamGap]:
        """Entries for one client: the log after `last_event_id` (if given), then live ones,
        with no gap and no repeat between the two. Subscribe before the response starts, so a
        client that has seen the response is sure to get everything published after it.
        Positions are dense, so a resume whose next position is no longer in the log starts
        with a StreamGap: the client learns it missed events instead of silently skipping them."""
        event_filter = subscription.filter
        try:
            seen = subscription.start_after
            if last_event_id is not None:
                cursor = last_event_id
                while True:
                    page = await self.log.after(cursor, REPLAY_PAGE, upto=subscription.start_after)
                    if cursor == last_event_id < subscription.start_after:  # the first page
                        next_logged = page[0].seq if page else subscription.start_after + 1
                        if next_logged > last_event_id + 1:
                            yield StreamGap(last_event_id, next_logged - 1)
                    for entry in page:
                        if event_filter.matches(entry):
                            yield entry
                    if len(page) < REPLAY_PAGE:
                        break
                    cursor = page[-1].seq
                seen = max(last_event_id, subscription.start_after)
            while (entry := await subscription.next()) is not None:
                if entry.seq > seen:  # a client ahead of this replica skips what it has had
                    yield entry
        finally:
            self.unsubscribe(subscription)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._deliver_new()
            except PyMongoError:
                log.warning("reading the event log failed; retrying", exc_info=True)
                await asyncio.sleep(1)

    def deliver_logged(self, entries: list[LogEntry]) -> None:
        """Entries this replica has just logged: delivered straight away when they follow what
        was delivered last, without reading them back; otherwise the log is read for the gap."""
        for entry in entries:
            if entry.seq != self.delivered + 1:  # another replica wrote in between: read the log
                self.notify()
                return
            self._gap_since = None
            self._deliver(entry)

    def _deliver(self, entry: LogEntry) -> None:
        self.delivered = entry.seq
        for subscription in list(self._subscriptions):
            subscription.offer(entry)

    async def _deliver_new(self) -> None:
        entries = await self.log.after(self.delivered, REPLAY_PAGE)
        for entry in entries:
            if entry.seq <= self.delivered:  # delivered by deliver_logged while this read ran
                continue
            if entry.seq != self.delivered + 1:
                now = time.monotonic()
                self._gap_since = self._gap_since or now
                if now - self._gap_since < self.gap_wait:
                    return
                EVENTS_SKIPPED.inc(entry.seq - self.delivered - 1)
                log.warning("event log positions %d-%d never appeared; skipped", self.delivered + 1, entry.seq - 1)
            self._gap_since = None
            self._deliver(entry)
        if len(entries) == REPLAY_PAGE:
            self.notify()


# ---- the broker side ------------------------------------------------------------------------

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
        received = []
        for message in messages:
            try:
                received.append(validate_event(json.loads(message.body)))
            except ValueError as exc:  # includes JSON, Unicode and pydantic validation errors
                await self._dead_letter(message, f"invalid event: {describe_invalid(exc)}")
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
        log.warning("dead-lettered an invalid event from %s (%s): %s", message.exchange, message.routing_key, error)


async def purge_periodically(event_log: EventLog, retention_hours: float, interval_seconds: float = 600) -> None:
    while True:
        try:
            removed = await event_log.purge(datetime.now(timezone.utc) - timedelta(hours=retention_hours))
            if removed:
                log.info("removed %d event log entries older than %s hours", removed, retention_hours)
        except PyMongoError:
            log.warning("purging the event log failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
