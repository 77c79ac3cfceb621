"""The outbox relay: publishes committed outbox events to `<service>.events` with publisher
confirms, then marks them published.

A transaction that emitted events hands its committed outbox records to the relay, which
publishes them at once, in commit order, without reading them back. When it starts, and after
any failed pass, it first catches up from the database instead: everything unpublished, in
outbox order, before anything handed over meanwhile, so that a broker blip does not let newer
events overtake older ones. Every `OUTBOX_POLL_SECONDS` it also looks for records nobody
handed it (a replica that died) — those older than `LEFTOVER_AFTER_SECONDS`, so that it does
not race the replica that is publishing them right now. Delivery is at least once: a crash
between the broker's confirm and the mark publishes an event again, which consumers' inboxes
and the gateway's event log absorb by event id."""

import logging
import time
from collections import deque
from datetime import timedelta

import eventlet
from eventlet.event import Event
from kombu import Exchange
from nameko.amqp.publish import Publisher

from platform_contracts.events import exchange_for

from . import topology
from .metrics import (
    DEAD_LETTER_QUEUE, OUTBOX_OLDEST_AGE, OUTBOX_PENDING, OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED,
)
from .store import utc_now

log = logging.getLogger(__name__)

BATCH = 200
PUBLISHED_RETENTION_SECONDS = 24 * 3600
GAUGE_REFRESH_SECONDS = 5.0
LEFTOVER_AFTER_SECONDS = 5.0
# Published records are marked together, at most this long after publishing: one write for
# many batches when commands come one by one. A crash before the mark republishes them, which
# consumers absorb by event id.
MARK_DELAY_SECONDS = 0.2


class OutboxRelay:
    def __init__(self, container, config):
        self.container = container
        self.service = container.service_name
        self.config = config
        self.poll_seconds = float(config.get("OUTBOX_POLL_SECONDS", 1.0))
        self.exchange = Exchange(exchange_for(self.service), type="topic", durable=True)
        self.publisher = Publisher(
            config["AMQP_URI"], use_confirms=True, serializer="json", declare=[self.exchange]
        )
        self.store = None  # set by StoreProvider
        self._committed: deque[dict] = deque()  # handed over at commit, in commit order
        self._unmarked: list = []  # ids published, not yet marked
        self._unmarked_since = 0.0
        self._catching_up = True  # from the database first: what a crash or a failure left
        self._polled_at = 0.0
        self._wakeup = Event()
        self._running = False
        self._thread = None
        self._gauges_at = 0.0

    def committed(self, records: list[dict]) -> None:
        """Called by the store right after a commit, with the outbox records it wrote."""
        self._committed.extend(records)
        self.wake()

    def wake(self) -> None:
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def start(self) -> None:
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._run, identifier="outbox_relay")

    def stop(self) -> None:
        self._running = False
        self.wake()
        if self._thread is not None:
            self._thread.wait()
            self._thread = None
        try:
            self._mark_published(force=True)
        except Exception:  # they go out again after a restart, and consumers absorb them
            log.warning("could not mark %d published outbox events", len(self._unmarked), exc_info=True)

    def _run(self) -> None:
        while self._running:
            try:
                if self._catching_up:
                    self._catch_up()
                self._mark_published(force=False)
                while self._committed and self._running and not self._poll_due():
                    self._publish(self._take_committed())
                    self._refresh_gauges()
                if self._poll_due():
                    self._polled_at = time.monotonic()
                    self._mark_published(force=True)  # what is published is no leftover
                    while self.publish_leftovers() == BATCH and self._running:
                        self._refresh_gauges()
            except Exception:  # broker or database away: keep the events, try again shortly
                self._catching_up = True
                OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
                log.exception("outbox relay pass failed; retrying")
                eventlet.sleep(min(self.poll_seconds, 1.0))
            # Also when publishing fails: the backlog gauges are how an operator finds out.
            self._refresh_gauges()
            self._wakeup = Event()
            if not self._committed or self._catching_up:
                wait = self.poll_seconds
                if self._unmarked:
                    wait = min(wait, max(0.0, self._unmarked_since + MARK_DELAY_SECONDS - time.monotonic()))
                with eventlet.Timeout(wait, False):
                    self._wakeup.wait()

    def _poll_due(self) -> bool:
        return time.monotonic() - self._polled_at >= self.poll_seconds

    def _catch_up(self) -> None:
        """Publish every unpublished record from the database, in outbox order; then carry on
        with what was handed over meanwhile that the database did not already show."""
        self._mark_published(force=True)
        self._committed.clear()  # committed before this line: the queries below see them
        done = set()
        while self._running:
            pending = list(self.store.db.outbox.find({"published_at": None}).sort("_id", 1).limit(BATCH))
            self._publish(pending)
            self._mark_published(force=True)
            done.update(r["_id"] for r in pending)
            self._refresh_gauges()
            if len(pending) < BATCH:
                break
        self._committed = deque(r for r in self._committed if r["_id"] not in done)
        self._catching_up = False

    def _take_committed(self) -> list[dict]:
        batch = []
        while self._committed and len(batch) < BATCH:
            batch.append(self._committed.popleft())
        return batch

    def publish_leftovers(self) -> int:
        """Publish records nobody handed over; how many there were (at most BATCH)."""
        cutoff = utc_now() - timedelta(seconds=LEFTOVER_AFTER_SECONDS)
        pending = list(self.store.db.outbox.find({"published_at": None, "created_at": {"$lt": cutoff}})
                       .sort("_id", 1).limit(BATCH))
        self._publish(pending)
        return len(pending)

    def _publish(self, records: list[dict]) -> None:
        for record in records:
            envelope = record["envelope"]
            self.publisher.publish(
                envelope,
                exchange=self.exchange,
                routing_key=record["type"],
                message_id=envelope["id"],
                type=record["type"],
            )
        if records:
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
            self.store.db.outbox.update_many(
                {"_id": {"$in": self._unmarked}}, {"$set": {"published_at": utc_now()}}
            )
            self._unmarked = []

    def _refresh_gauges(self) -> None:
        now = time.monotonic()
        if now - self._gauges_at < GAUGE_REFRESH_SECONDS:
            return
        self._gauges_at = now
        try:
            outbox = self.store.db.outbox
            OUTBOX_PENDING.labels(self.service).set(outbox.count_documents({"published_at": None}))
            oldest = outbox.find_one({"published_at": None}, sort=[("_id", 1)])
            age = (utc_now() - oldest["created_at"]).total_seconds() if oldest else 0.0
            OUTBOX_OLDEST_AGE.labels(self.service).set(max(age, 0.0))
            cutoff = utc_now() - timedelta(seconds=PUBLISHED_RETENTION_SECONDS)
            outbox.delete_many({"published_at": {"$lt": cutoff}})
        except Exception:  # the database away: the gauges keep their last values
            log.warning("outbox gauges: the database is unreachable", exc_info=True)
        try:
            DEAD_LETTER_QUEUE.labels(self.service).set(
                topology.dead_letter_count(self.config["AMQP_URI"], self.service)
            )
        except Exception:
            log.warning("dead-letter gauge: the broker is unreachable", exc_info=True)

