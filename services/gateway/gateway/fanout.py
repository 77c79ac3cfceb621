"""Fan-out: the log's entries to every connected client of this replica, in sequence order,
a resumed client first getting what it missed from the log."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pymongo.errors import PyMongoError

from .event_log import EventLog, LogEntry
from .metrics import EVENTS_SKIPPED
from .stream_filter import EventFilter

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
CLIENT_BUFFER = 10_000


@dataclass(frozen=True)
class StreamGap:
    """The events after `last_event_id` that a client asked for are gone from the log (past
    EVENT_LOG_RETENTION_HOURS): it resumes after `resumed_after` and should reload what it shows."""

    last_event_id: int
    resumed_after: int


class Subscription:
    """One connected client: its filter and a buffer of live entries after `start_after`."""

    def __init__(self, event_filter: EventFilter, start_after: int):
        self.filter = event_filter
        self.start_after = start_after
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue()
        self.ended = False

    def end(self) -> None:
        """Stop the stream now (its reader lost the right to it): what is buffered is dropped."""
        self.ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def offer(self, entry: LogEntry | None) -> None:
        if self.ended:
            return
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
        self._open_streams: Counter[str] = Counter()  # user id -> their connected clients
        self._wake = asyncio.Event()
        self._gap_since: float | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        self.delivered = await self.log.last_seq()
        self._task = asyncio.create_task(self._run(), name="event-broadcaster")

    async def stop(self) -> None:
        # The flag too: on Python 3.11 a cancellation that lands as the wait is woken (a notify()
        # just before) is swallowed by asyncio.wait_for, and the loop would go on for ever.
        self._stopping = True
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

    def open_stream(self, user_id: str, limit: int) -> bool:
        """Count a client of `user_id` in, unless they already have `limit` open here."""
        if self._open_streams[user_id] >= limit:
            return False
        self._open_streams[user_id] += 1
        return True

    def close_stream(self, user_id: str) -> None:
        self._open_streams[user_id] -= 1
        if self._open_streams[user_id] <= 0:
            del self._open_streams[user_id]

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
                if last_event_id < subscription.start_after:
                    oldest = await self.log.after(last_event_id, 1, upto=subscription.start_after)
                    next_logged = oldest[0].seq if oldest else subscription.start_after + 1
                    if next_logged > last_event_id + 1:
                        yield StreamGap(last_event_id, next_logged - 1)
                # Only the entries the filter may match are read, through the log's indexes.
                where = event_filter.log_query()
                cursor = last_event_id
                while not subscription.ended:
                    page = await self.log.after(cursor, REPLAY_PAGE, upto=subscription.start_after, where=where)
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
        while not self._stopping:
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
