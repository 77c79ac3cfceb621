"""The retained event log (`event_log` in the gateway's MongoDB): every consumed event under a
dense sequence number, which is the SSE `id:`. Fan-out reads from here, not from the broker,
so every replica delivers every event (the replicas compete on the one broker queue) and a
client resuming from `Last-Event-ID` gets the same order on any replica. Entries older than
EVENT_LOG_RETENTION_HOURS are purged."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from platform_contracts.codes import DIVISION_PREFIX_LENGTHS
from platform_contracts.envelope import CloudEvent
from service_kit.transaction_owners import TransactionOwners

log = logging.getLogger(__name__)

PURGE_BATCH = 1000


@dataclass(frozen=True)
class LogEntry:
    seq: int
    type: str
    division: str | None
    envelope: dict


def _entry(doc: dict) -> LogEntry:
    return LogEntry(seq=doc["seq"], type=doc["type"], division=doc.get("division"), envelope=doc["envelope"])


def _log_doc(seq: int, event: CloudEvent) -> dict:
    envelope = event.to_json_dict()
    return {"seq": seq, "event_id": event.id, "type": event.type, "division": event.division, "time": event.time,
            **filter_keys(envelope), "logged_at": datetime.now(timezone.utc), "envelope": envelope}


NO_DIVISION = "-"  # the division key of an entry without a division (a notification for a user, say)


def filter_keys(envelope: dict) -> dict:
    """What a resuming stream's filter looks an entry up by, as exact values (SecantusDB answers
    equality and `$in` on an indexed array from its index, but a range next to the `seq` range,
    or an `$or`, by a scan): `division_keys`, every prefix a division filter can be (2, 4, 6, 9,
    12 digits) of the event's division and of its other division (a transfer's other side);
    `type_keys`, the type and each of its prefixes up to a dot (`organization.` for
    `organization.*`)."""
    divisions = [d for d in (envelope.get("division"), envelope.get("otherdivision")) if isinstance(d, str) and d]
    division_keys = {d[:n] for d in divisions for n in DIVISION_PREFIX_LENGTHS if n <= len(d)}
    event_type = str(envelope.get("type") or "")
    type_keys = {event_type[:i + 1] for i, c in enumerate(event_type) if c == "."} | {event_type}
    return {"division_keys": sorted(division_keys) or [NO_DIVISION], "type_keys": sorted(type_keys)}


OnLogged = Callable[[list[LogEntry], AsyncClientSession], Awaitable[None]]


class EventLog:
    """The retained log. Positions are handed out by the one writer (the active consumer) from
    memory: the unique index on `seq` is the guard, so a writer whose idea of the next position
    is stale (another replica wrote meanwhile) collides, reloads it and tries again. It reloads
    anyway before writing after a pause: a replica that stood by while others wrote and purged
    could otherwise write below the purged positions without colliding."""

    RELOAD_AFTER_IDLE_SECONDS = 1.0

    def __init__(self, db: AsyncDatabase, owners: TransactionOwners | None = None):
        self.client = db.client
        # Records the sessions of the log's transactions, so that a standby can end them if
        # this replica is killed inside one (see service_kit.transaction_owners).
        self.owners = owners
        self.collection = db["event_log"]
        self._next_seq: int | None = None
        self._appended_at = 0.0

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("seq", ASCENDING)], unique=True, name="seq_unique")
        await self.collection.create_index([("event_id", ASCENDING)], unique=True, name="event_id_unique")
        # A resuming stream reads only what its filter may match (Broadcaster.stream).
        await self.collection.create_index([("division_keys", ASCENDING), ("seq", ASCENDING)],
                                           name="division_keys_seq")
        await self.collection.create_index([("type_keys", ASCENDING), ("seq", ASCENDING)], name="type_keys_seq")
        await self._add_filter_keys_to_older_entries()
        # Retention walks the seq index instead, so no insert pays for a logged_at index.
        if "logged_at" in await self.collection.index_information():
            await self.collection.drop_index("logged_at")

    async def _add_filter_keys_to_older_entries(self) -> None:
        """Entries logged before the filter keys were: without them, no filter would find them."""
        async with self.collection.find({"division_keys": None}, {"envelope": 1}) as cursor:
            async for doc in cursor:
                await self.collection.update_one({"_id": doc["_id"]}, {"$set": filter_keys(doc["envelope"])})

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
                    if self.owners and (lsid := self.owners.new_session(session)) is not None:
                        await asyncio.to_thread(self.owners.record, lsid)
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
            self._next_seq = await self.last_seq(after=self._next_seq - 1 if self._next_seq else None) + 1

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

    async def after(self, seq: int, limit: int, upto: int | None = None, where: dict | None = None) -> list[LogEntry]:
        """The entries after `seq` (up to `upto`), in order; with `where`, only those it matches."""
        bounds = {"$gt": seq} if upto is None else {"$gt": seq, "$lte": upto}
        docs = await self.collection.find({**(where or {}), "seq": bounds}).sort("seq", ASCENDING).limit(limit).to_list()
        return [_entry(doc) for doc in docs]

    async def last_seq(self, after: int | None = None) -> int:
        """The newest entry's position. With `after` (a position this writer logged), read as the
        entries from there on, which the index answers: SecantusDB reads the whole index for a
        sort with a limit, seconds once the log holds 50,000 entries, and a writer reloads its
        position after every pause."""
        if after:
            newer = await self.collection.find({"seq": {"$gte": after}}, {"seq": 1, "_id": 0}).to_list()
            if newer:
                return max(doc["seq"] for doc in newer)
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


async def purge_periodically(event_log: EventLog, retention_hours: float, interval_seconds: float = 600) -> None:
    while True:
        try:
            removed = await event_log.purge(datetime.now(timezone.utc) - timedelta(hours=retention_hours))
            if removed:
                log.info("removed %d event log entries older than %s hours", removed, retention_hours)
        except PyMongoError:
            log.warning("purging the event log failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
