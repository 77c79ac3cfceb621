"""The outbox relay: publishes committed outbox events to `<service>.events` with publisher
confirms, then marks them published.

A transaction that emitted events hands its committed outbox records to the relay, which
publishes them at once, in commit order, without reading them back. When it starts, and after
any failed pass, it first catches up from the database instead: everything unpublished, in
outbox order, before anything handed over meanwhile, so that a broker blip does not let newer
events overtake older ones. Every `OUTBOX_POLL_SECONDS` it also looks for records nobody
handed it (a replica that died) — those older than `LEFTOVER_AFTER_SECONDS`, so that it does
not race the replica that is publishing them right now, and only once its own hand-over is
drained (or every `LEFTOVER_AFTER_SECONDS` under one that never is). However far behind a
relay is, what it holds is left to it: its own poll skips its hand-over, and other replicas
skip the records of a relay whose process is alive (each record names it; liveness is the
transaction owners' heartbeat, service_kit.transaction_owners), in the poll and in a catch-up
alike, for up to `LIVE_RELAY_GRACE_SECONDS` (a relay cut off from the broker while its process
lives on must not hold its events back for ever). Delivery is at least once: a
crash between the broker's confirm and the mark publishes an event again, which consumers'
inboxes and the gateway's event log absorb by event id.

The relay runs in a thread of its own: a green thread in the nameko services (eventlet patches
`threading` and `time` there), an OS thread beside the gateway's event loop. So nothing here
imports nameko or eventlet, which the gateway's image does not install."""

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

import kombu.serialization
from kombu import Connection, Exchange, Producer
from prometheus_client import Counter, Gauge
from pymongo import ASCENDING
from pymongo.collection import Collection

from platform_contracts.envelope import utc_now
from platform_contracts.events import exchange_for

log = logging.getLogger(__name__)

OUTBOX_PENDING = Gauge("outbox_pending_events", "Outbox events not yet confirmed by the broker", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox event", ["service"]
)
OUTBOX_PUBLISHED = Counter("outbox_published", "Outbox events published with a broker confirm", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter("outbox_publish_failures", "Failed relay publish attempts", ["service"])

# The CloudEvents AMQP binding's structured content mode: the whole envelope is the body, and
# the content type says so (as application/json, the official SDK read it as binary mode and
# refused it). Registered with kombu here, so that every consumer in a process that imports
# the kit decodes it (nameko's accept it: service_kit.config, ACCEPT).
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
kombu.serialization.register("cloudevents", json.dumps, json.loads, content_type=CLOUDEVENTS_CONTENT_TYPE,
                             content_encoding="utf-8")


def encode_envelope(envelope: dict) -> bytes:
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


# What the relay's queries walk: the unpublished records, in outbox order.
OUTBOX_INDEX = [("published_at", ASCENDING), ("_id", ASCENDING)]
# A few connection attempts, then the pass fails and the relay catches up from the database
# later.
CONNECT_RETRY = {"max_retries": 3, "interval_start": 2, "interval_step": 1, "interval_max": 5}
CONFIRM_TIMEOUT_SECONDS = 30.0

BATCH = 200
PUBLISHED_RETENTION_SECONDS = 24 * 3600
GAUGE_REFRESH_SECONDS = 5.0
LEFTOVER_AFTER_SECONDS = 5.0
# A live replica's records are left to its relay; older than this they are anyone's, in case
# that relay cannot publish while its process lives on (cut off from the broker): a duplicate
# then, rather than events held for as long as that lasts.
LIVE_RELAY_GRACE_SECONDS = 60.0
# Published records are marked together, at most this long after publishing: one write for
# many batches when commands come one by one. A crash before the mark republishes them, which
# consumers absorb by event id.
MARK_DELAY_SECONDS = 0.2
# How long a stop waits for the relay to publish what was committed before it stopped.
STOP_SECONDS = 5.0


class PublishNotConfirmed(Exception):
    """The broker refused (nacked) a message, or did not confirm it in time."""


class ConfirmedPublisher:
    """Publishes a batch on one channel in confirm mode, then waits once for the broker to
    confirm all of it. Waiting message by message put a round trip between a command's events,
    so its `coverage.changed` reached consumers one delivery after its `unit.registered`.

    Any failure drops the connection: the next batch opens a new one, and the relay catches up
    from the database in between. The price of confirming a batch at once: were a queue to
    refuse one message of a batch (a nack; only a length limit with reject-publish does that,
    and no queue bound to an events exchange has one) and take a later one, it would get that
    later one before the first, which the catch-up publishes again. Consumers apply each event
    once whatever the order; the platform's handlers do not depend on the order within a batch."""

    def __init__(self, amqp_uri: str, exchange: Exchange, connection_name: str):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.connection_name = connection_name  # how operators tell it apart on the broker
        self.connection: Connection | None = None
        self._producer: Producer | None = None
        self._unconfirmed: set[int] = set()  # delivery tags the broker has yet to confirm
        self._next_tag = 1
        self._refused = False

    def publish(self, records: list[dict]) -> None:
        try:
            producer = self._usable_producer()
            for record in records:
                envelope = record["envelope"]
                producer.publish(encode_envelope(envelope), routing_key=record["type"],
                                 content_type=CLOUDEVENTS_CONTENT_TYPE, content_encoding="utf-8",
                                 delivery_mode="persistent", message_id=envelope["id"], type=record["type"])
                self._unconfirmed.add(self._next_tag)
                self._next_tag += 1
            deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
            while self._unconfirmed and not self._refused:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    self.connection.drain_events(timeout=remaining)
                except TimeoutError:  # socket.timeout included
                    raise PublishNotConfirmed(
                        f"{len(self._unconfirmed)} messages not confirmed in {CONFIRM_TIMEOUT_SECONDS:.0f} s") from None
            if self._refused:
                raise PublishNotConfirmed("the broker refused a message")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let the socket go without the closing handshake: a broken connection cannot do it,
        and a broker under a resource alarm stops reading, so waiting for its answer could hold
        up a stop for as long as the alarm lasts. Unconfirmed records stay in the outbox."""
        if self.connection is not None:
            try:
                self.connection.collect()
            except Exception:
                log.debug("dropping the relay's broker connection failed", exc_info=True)
        self.connection = self._producer = None

    def _usable_producer(self) -> Producer:
        """The open channel's producer, unless the broker closed the connection while it was
        idle (a restart, an operator): then a new one, before anything of the batch is sent,
        so that such a close costs neither a failed pass nor a catch-up."""
        if self._producer is not None:
            try:
                self.connection.drain_events(timeout=0)  # only what is already waiting
            except TimeoutError:
                pass  # nothing waiting: as far as can be told, the connection is alive
            except Exception as exc:
                log.info("the broker closed the %s connection while it was idle (%s); opening a new one",
                         self.connection_name, exc)
                self.close()
        return self._producer or self._open()

    def _open(self) -> Producer:
        self.connection = Connection(self.amqp_uri, transport_options={
            "client_properties": {"connection_name": self.connection_name}})
        self.connection.ensure_connection(**CONNECT_RETRY)
        channel = self.connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._unconfirmed, self._next_tag, self._refused = set(), 1, False
        self._producer = Producer(channel, exchange=self.exchange)  # declares the exchange
        return self._producer

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._refused = True
        self._on_ack(delivery_tag, multiple)


def relay_connection_name(source: str) -> str:
    return f"{source} outbox relay"


def outbox_record(record_id, event_type: str, envelope: dict, created_at, relay: str | None = None) -> dict:
    """An event waiting in an outbox; the relay publishes records in `_id` order. `relay` is the
    process whose relay it is handed to (its transaction owner id): while that process is alive,
    other replicas' polls leave the record to it."""
    return {"_id": record_id, "type": event_type, "envelope": envelope, "created_at": created_at,
            "published_at": None, "relay": relay}


class OutboxRelay:
    """Publishes the outbox of `source` to `<source>.events`. `refresh_other_gauges`, if given,
    runs on the relay's gauge schedule (the services' dead-letter queue depth)."""

    def __init__(self, source: str, amqp_uri: str, poll_seconds: float = 1.0,
                 refresh_other_gauges: Callable[[], None] | None = None):
        self.service = source
        self.poll_seconds = poll_seconds
        self.refresh_other_gauges = refresh_other_gauges
        self.exchange = Exchange(exchange_for(source), type="topic", durable=True)
        self.publisher = ConfirmedPublisher(amqp_uri, self.exchange, relay_connection_name(source))
        self.outbox: Collection | None = None  # set by whoever owns the database
        # Set with it: the ids of the other processes alive on this outbox (their records are
        # theirs to publish, however far behind they are).
        self.other_relays_alive: Callable[[], list[str]] = lambda: []
        self._committed: deque[dict] = deque()  # handed over at commit, in commit order
        # Committing threads append while the relay takes from the left (each atomic on a
        # deque); rebuilding it after a catch-up must not lose an append made meanwhile.
        self._handover = threading.Lock()
        self._unmarked: list = []  # ids published, not yet marked
        self._unmarked_since = 0.0
        self._catching_up = True  # from the database first: what a crash or a failure left
        self._polled_at = 0.0
        self._wakeup = threading.Event()
        self._running = False
        self._finished = threading.Event()
        self._gauges_at = 0.0

    def committed(self, records: list[dict]) -> None:
        """Called by the store right after a commit, with the outbox records it wrote."""
        with self._handover:
            self._committed.extend(records)
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def start(self, spawn: Callable[[Callable[[], None]], object]) -> None:
        """`spawn` runs the relay's loop in a thread of its own."""
        self._running = True
        self._finished.clear()
        spawn(self._run)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Publish what was handed over and is not published yet, mark what is, and end the
        relay's thread; call it once nothing commits any more. Waits at most `timeout` (a broker
        that is away or blocked would otherwise hold up the stop): what is left unpublished
        stays in the outbox, for the next start or another replica. Whether it finished."""
        if self._running:
            self._running = False
            self.wake()
            if not self._finished.wait(timeout):
                log.warning("outbox relay of %s still busy after %.0fs: stopping without it; what it has not "
                            "published stays in the outbox", self.service, timeout)
                return False
        try:
            self._mark_published(force=True)
        except Exception:  # they go out again after a restart, and consumers absorb them
            log.warning("could not mark %d published outbox events", len(self._unmarked), exc_info=True)
            return False
        return True

    def _run(self) -> None:
        try:
            while self._running:
                self._pass()
            self._publish_handed_over()
        finally:
            self.publisher.close()
            self._finished.set()

    def _publish_handed_over(self) -> None:
        """At a stop: what was committed and handed over but not published yet, unless the relay
        is failing (then the outbox keeps it for the next start, or another replica's poll)."""
        if self._catching_up or not self._committed:
            return
        try:
            while self._committed:
                self._publish(self._take_committed())
        except Exception:
            OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
            log.warning("outbox relay of %s: publishing at the stop failed; the events stay in the outbox",
                        self.service, exc_info=True)

    def _pass(self) -> None:
        try:
            if self._catching_up:
                self._catch_up()
            self._mark_published(force=False)
            while self._committed and self._running and not self._poll_due():
                self._publish(self._take_committed())
                self._refresh_gauges()
            if self._poll_due():
                self._mark_published(force=True)  # what is published is no leftover
                after = None
                while self._running and (after := self.publish_leftovers(after)) is not None:
                    self._refresh_gauges()
                self._polled_at = time.monotonic()  # from the end: a long poll still leaves time to publish
        except Exception:  # broker or database away: keep the events, try again shortly
            self._catching_up = True
            OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
            log.exception("outbox relay pass failed; retrying")
            time.sleep(min(self.poll_seconds, 1.0))
        # Also when publishing fails: the backlog gauges are how an operator finds out.
        self._refresh_gauges()
        self._wakeup.clear()  # a commit or a stop after this line wakes the wait
        if self._running and (not self._committed or self._catching_up):
            wait = self.poll_seconds
            if self._unmarked:
                wait = min(wait, max(0.0, self._unmarked_since + MARK_DELAY_SECONDS - time.monotonic()))
            self._wakeup.wait(wait)

    def _poll_due(self) -> bool:
        """Leftovers are looked for once the hand-over is drained, and at the latest every
        LEFTOVER_AFTER_SECONDS under a hand-over that never drains."""
        since = time.monotonic() - self._polled_at
        return since >= self.poll_seconds and (not self._committed or since >= LEFTOVER_AFTER_SECONDS)

    def _catch_up(self) -> None:
        """Publish every unpublished record from the database, in outbox order; then carry on
        with what was handed over meanwhile that the database did not already show."""
        self._mark_published(force=True)
        self._committed.clear()  # committed before this line: the queries below see them
        done = set()
        while self._running:
            pending = list(self.outbox.find({"published_at": None, **self._not_live_relays()})
                           .sort("_id", 1).limit(BATCH))
            self._publish(pending)
            self._mark_published(force=True)
            done.update(r["_id"] for r in pending)
            self._refresh_gauges()
            if len(pending) < BATCH:
                break
        else:  # stopped first: the rest goes out after the next start, still before anything newer
            return
        with self._handover:
            kept = [r for r in self._committed if r["_id"] not in done]
            self._committed.clear()
            self._committed.extend(kept)
        self._catching_up = False

    def _take_committed(self) -> list[dict]:
        batch = []
        while self._committed and len(batch) < BATCH:
            batch.append(self._committed.popleft())
        return batch

    def publish_leftovers(self, after=None):
        """Publish the next BATCH of records nobody handed over, from the outbox id `after` on;
        the last id looked at if there may be more, else None. Records still waiting in this
        relay's hand-over (a backlog older than LEFTOVER_AFTER_SECONDS) are left to it: taken
        here too, they went out twice."""
        cutoff = utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS)
        query = {"published_at": None, "created_at": {"$lt": cutoff}, **self._not_live_relays()}
        if after is not None:
            query["_id"] = {"$gt": after}
        pending = list(self.outbox.find(query).sort("_id", 1).limit(BATCH))
        if not pending:
            return None
        with self._handover:
            held = {record["_id"] for record in self._committed}
        self._publish([record for record in pending if record["_id"] not in held])
        return pending[-1]["_id"] if len(pending) == BATCH else None

    def _not_live_relays(self) -> dict:
        """The filter leaving other live replicas' records to their relays, for a while."""
        if not (alive := self.other_relays_alive()):
            return {}
        grace = utc_now() - timedelta(seconds=LIVE_RELAY_GRACE_SECONDS)
        return {"$or": [{"relay": {"$nin": alive}}, {"created_at": {"$lt": grace}}]}

    def _publish(self, records: list[dict]) -> None:
        if not records:
            return
        self.publisher.publish(records)
        OUTBOX_PUBLISHED.labels(self.service).inc(len(records))
        if not self._unmarked:
            self._unmarked_since = time.monotonic()
        self._unmarked += [r["_id"] for r in records]
        self._mark_published(force=False)

    def _mark_published(self, force: bool) -> None:
        """One write marks every confirmed record published since the last mark."""
        if not self._unmarked:
            return
        due = len(self._unmarked) >= BATCH or time.monotonic() - self._unmarked_since >= MARK_DELAY_SECONDS
        if force or due:
            self.outbox.update_many(
                {"_id": {"$in": self._unmarked}}, {"$set": {"published_at": utc_now()}}
            )
            self._unmarked = []

    def _refresh_gauges(self) -> None:
        now = time.monotonic()
        if now - self._gauges_at < GAUGE_REFRESH_SECONDS:
            return
        self._gauges_at = now
        try:
            outbox = self.outbox
            OUTBOX_PENDING.labels(self.service).set(outbox.count_documents({"published_at": None}))
            oldest = outbox.find_one({"published_at": None}, sort=[("_id", 1)])
            age = (utc_now() - oldest["created_at"]).total_seconds() if oldest else 0.0
            OUTBOX_OLDEST_AGE.labels(self.service).set(max(age, 0.0))
            cutoff = utc_now() - timedelta(seconds=PUBLISHED_RETENTION_SECONDS)
            outbox.delete_many({"published_at": {"$lt": cutoff}})
        except Exception:  # the database away: the gauges keep their last values
            log.warning("outbox gauges: the database is unreachable", exc_info=True)
        if self.refresh_other_gauges is not None:
            try:
                self.refresh_other_gauges()
            except Exception:
                log.warning("gauges refreshed beside the outbox's failed", exc_info=True)

