"""MongoDB access for a nameko service, built around one rule: a state change, the events it
causes, and the record of the command or event that caused it commit in one transaction.

- `outbox`: events waiting for the relay (see outbox.py) to publish them.
- `commands`: results of commands already executed, by command id, so a repeated command
  (a client's Idempotency-Key, or an RPC redelivered after a crash) returns the first result.
- `inbox`: ids of integration events already applied, per handler, so a redelivered event
  changes nothing.
"""

import contextlib
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import pymongo
from bson import ObjectId
from pymongo.errors import DuplicateKeyError, OperationFailure

from platform_contracts.envelope import CloudEvent
from platform_contracts.errors import DomainError, InvalidValue
from platform_contracts.events import validate_event

from . import tracing
from .metrics import COMMANDS_PER_TRANSACTION, INBOX_DUPLICATES
from .outbox import OUTBOX_INDEX, outbox_record
from .transaction_owners import DEFAULT_HEARTBEAT_SECONDS, TransactionOwners

log = logging.getLogger(__name__)

GROUP_COMMIT_MAX = 50  # commands committed together at most
# The request field a command id comes from (the chassis locates it in the headers).
IDEMPOTENCY_KEY = "Idempotency-Key"
# How long command and inbox records are kept (COMMAND_LOG_RETENTION_HOURS): far longer than
# any client or broker retries a command or an event.
DEFAULT_LOG_RETENTION_HOURS = 168.0
INDEX_NOT_FOUND = 27


def utc_now() -> datetime:
    """Now, to the millisecond: what BSON stores, so a returned record equals a re-read one."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class AlreadyApplied(Exception):
    """Raised inside a transaction to abort it when the inbox already holds the event."""


class UnitOfWork:
    """What one transaction sees: the database bound to its session, and the events it emits."""

    def __init__(self, db, session, source: str, correlationid: str | None, causationid: str | None,
                 shared: dict | None = None, before_commit: list | None = None, traceparent: str | None = None):
        self.db = db
        self.session = session
        # Shared by every unit of work in one transaction (several under group commit):
        # state a service accumulates across them, and what it writes last.
        self.shared = {} if shared is None else shared
        self.before_commit: list[Callable[[], None]] = [] if before_commit is None else before_commit
        self.source = source
        self.correlationid = correlationid
        self.causationid = causationid
        self.traceparent = traceparent  # of the command or event being handled, carried by what it emits
        self.events: list[CloudEvent] = []
        self.on_commit: list[Callable[[], None]] = []
        self.now = utc_now()

    def emit(self, type: str, *, subject: str | None, data: dict, division: str | None = None,
             other_division: str | None = None) -> CloudEvent:
        event = validate_event(CloudEvent(
            source=self.source, type=type, subject=subject, data=data, division=division,
            otherdivision=other_division if other_division != division else None,
            correlationid=self.correlationid, causationid=self.causationid, time=self.now,
            traceparent=self.traceparent,
        ))
        self.events.append(event)
        return event

    def write_outbox(self, events: list[CloudEvent], relay: str | None = None) -> list[dict]:
        """Add `events` to the outbox in this transaction; the records, for the relay (of the
        process `relay`) once committed."""
        records = [outbox_record(ObjectId(), e.type, e.to_json_dict(), self.now, relay) for e in events]
        if records:
            self.db.outbox.insert_many(records, session=self.session)
        return records


def parse_command_id(command_id) -> tuple[str, str | None]:
    """A command id is a string, or `{"key": str, "request": str}` where `request` is a
    fingerprint of the request that carried the key (the gateway sends that): a repeat whose
    fingerprint differs is a key reused for another request, refused rather than answered with
    the first request's result."""
    if isinstance(command_id, dict) and set(command_id) == {"key", "request"}:
        key, request = command_id["key"], command_id["request"]
        if isinstance(request, str) and 1 <= len(request) <= 200:
            command_id = key
        else:
            command_id = None
    else:
        request = None
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 300:
        raise InvalidValue(IDEMPOTENCY_KEY, "must be a string of 1 to 300 characters")
    return command_id, request


def _check_same_request(record: dict, request: str | None) -> None:
    if request is not None and record.get("request") not in (None, request):
        raise InvalidValue(IDEMPOTENCY_KEY, "already used for a different request",
                           "this Idempotency-Key was already used for a different request; use a new key")


class _PendingWrite:
    """A command or an event waiting for the writer; whoever holds the write lock may execute
    it, alone or in a group. `log` is the collection its record goes to (the command log or the
    inbox), `record` builds that record from the unit of work and the result, and `alone` runs
    it in a transaction of its own (when its group failed)."""

    def __init__(self, log: str, correlationid: str, causationid: str, work: Callable[[UnitOfWork], Any],
                 record: Callable[[UnitOfWork, Any], dict], alone: Callable[[], Any], traceparent: str | None):
        self.log, self.correlationid, self.causationid = log, correlationid, causationid
        self.traceparent = traceparent
        self.work, self.record, self.alone = work, record, alone
        self.finished = False
        self._result = None
        self._error: BaseException | None = None

    def finish(self, result=None, error: BaseException | None = None) -> None:
        self._result, self._error, self.finished = result, error, True

    def outcome(self):
        if self._error is not None:
            raise self._error
        return self._result


class Store:
    """The service's database plus its transactional helpers; thread- and greenlet-safe."""

    def __init__(self, uri: str, database: str, source: str,
                 after_commit: Callable[[list[dict]], None] = lambda records: None, serialize_writes: bool = False,
                 server_selection_timeout_ms: int = 30_000,
                 transaction_heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS):
        self.client = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=server_selection_timeout_ms)
        self.db = self.client[database]
        # Run `owners.run` beside the service: a killed replica's open transactions are then
        # ended within a few heartbeats instead of holding up writes for their whole lifetime.
        self.owners = TransactionOwners(self.db, transaction_heartbeat_seconds)
        self.source = source
        self._after_commit = after_commit
        # Where every write touches the same few documents (coverage counters), concurrent
        # transactions mostly abort each other and retry; one writer at a time per process is
        # faster. A green lock under eventlet. Replicas still conflict, and retry.
        self._serialize = serialize_writes
        self._write_lock = threading.Lock() if serialize_writes else contextlib.nullcontext()
        self._queue: list[_PendingWrite] = []

    def ensure_indexes(self, log_retention_hours: float = DEFAULT_LOG_RETENTION_HOURS) -> None:
        """The outbox's index, and TTL indexes that expire the command log and the inbox after
        `log_retention_hours`: a record is needed only while its command or event may still be
        repeated, and a command's record holds the result it returned (names, partial digits)."""
        self.db.outbox.create_index(OUTBOX_INDEX)
        seconds = int(log_retention_hours * 3600)
        self._ensure_expiry("inbox", "applied_at", seconds)
        self._ensure_expiry("commands", "executed_at", seconds)

    def _ensure_expiry(self, collection: str, field: str, seconds: int) -> None:
        """A TTL index on `field`, also where an older version left a plain index of the same name
        (dropped and made again) or another expiry (changed in place with collMod)."""
        name = f"{field}_1"
        existing = self.db[collection].index_information().get(name)
        if existing is not None and existing.get("expireAfterSeconds") == seconds:
            return
        if existing is not None and "expireAfterSeconds" in existing:
            self.db.command("collMod", collection, index={"keyPattern": {field: 1}, "expireAfterSeconds": seconds})
            return
        if existing is not None:
            try:
                self.db[collection].drop_index(name)
            except OperationFailure as exc:
                if exc.code != INDEX_NOT_FOUND:  # another replica starting up dropped it first
                    raise
        self.db[collection].create_index(field, name=name, expireAfterSeconds=seconds)

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def _session(self):
        """A session for a transaction, recorded as this process's (see transaction_owners)."""
        with self.client.start_session() as session:
            self.owners.session_started(session)
            yield session

    def _transaction(self, work: Callable[[UnitOfWork], Any], correlationid, causationid,
                     exclusive: bool = True, traceparent: str | None = None) -> tuple[Any, UnitOfWork]:
        holder: dict[str, UnitOfWork] = {}

        def attempt(session):
            # with_transaction may call this again after a transient error: start clean.
            uow = holder["uow"] = UnitOfWork(self.db, session, self.source, correlationid, causationid,
                                             traceparent=traceparent)
            result = work(uow)
            for hook in uow.before_commit:
                hook()
            holder["outbox"] = uow.write_outbox(uow.events, self.owners.owner)
            return result

        with self._write_lock if exclusive else contextlib.nullcontext():
            with self._session() as session:
                result = session.with_transaction(attempt)
        uow = holder["uow"]
        if holder["outbox"]:
            self._after_commit(holder["outbox"])
        for callback in uow.on_commit:
            callback()
        return result, uow

    def transaction(self, work: Callable[[UnitOfWork], Any], correlationid: str | None = None,
                    exclusive: bool = True) -> Any:
        """`exclusive=False` for long, mostly-reading transactions that must not hold up writers."""
        return self._transaction(work, correlationid, correlationid, exclusive, tracing.current_traceparent())[0]

    def execute_command(self, command_id: str | dict, work: Callable[[UnitOfWork], dict]) -> dict:
        """Run `work` once per command id (see `parse_command_id`); a repeat returns the stored
        result unchanged.

        With serialized writes, commands and events that queue up while another commits are
        committed together in one transaction (group commit): the commit and the outbox and
        log writes are paid once for the group. If any of a group fails, the group is rolled
        back and each runs on its own, so one bad command fails alone."""
        command_id, request = parse_command_id(command_id)
        # Taken in the caller's thread: under group commit another writer may execute it.
        traceparent = tracing.current_traceparent()
        if not self._serialize:
            return self._execute_alone(command_id, request, work, False, traceparent)
        return self._write(_PendingWrite(
            "commands", command_id, command_id, work,
            record=lambda uow, result: {"_id": command_id, "result": result, "request": request,
                                        "executed_at": uow.now},
            alone=lambda: self._execute_alone(command_id, request, work, False, traceparent), traceparent=traceparent))

    def stored_result(self, command_id: str | dict) -> dict | None:
        """The result a command id already has, if any: for a service that asks another service
        something before it executes a command, so that a repeat is answered from the log as it
        was, not checked again against what has changed since."""
        command_id, request = parse_command_id(command_id)
        done = self.db.commands.find_one({"_id": command_id})
        if done is None:
            return None
        _check_same_request(done, request)
        return done["result"]

    def _write(self, pending: _PendingWrite):
        self._queue.append(pending)
        with self._write_lock:
            while not pending.finished:
                group = self._queue[:GROUP_COMMIT_MAX]
                del self._queue[: len(group)]
                if not group:  # another writer took it and was interrupted before finishing it
                    raise RuntimeError("the write was lost by an interrupted writer")
                self._execute_group(group)
        return pending.outcome()

    def _execute_alone(self, command_id: str, request: str | None, work: Callable[[UnitOfWork], dict],
                       exclusive: bool, traceparent: str | None) -> dict:
        def once(uow: UnitOfWork):
            result = work(uow)
            uow.db.commands.insert_one(
                {"_id": command_id, "result": result, "request": request, "executed_at": uow.now},
                session=uow.session,
            )
            return result

        try:
            return self._transaction(once, command_id, command_id, exclusive, traceparent)[0]
        except (DuplicateKeyError, DomainError):
            # Commands are almost always new, so the log is not read first: a repeat shows when
            # its record will not be written twice, or when the repeat itself is refused because
            # the first run changed what it checks (the unit is registered now). The record
            # written first is the answer (also when two deliveries raced).
            done = self.db.commands.find_one({"_id": command_id})
            if done is None:
                raise
            _check_same_request(done, request)
            return done["result"]

    def _execute_group(self, group: list[_PendingWrite]) -> None:
        if len(group) > 1:
            try:
                results, uows, outbox = self._commit_group(group)
            except Exception:  # noqa: BLE001 - any failure: fall back to one transaction each
                log.debug("group of %d writes rolled back; running them one by one", len(group))
            else:
                COMMANDS_PER_TRANSACTION.labels(self.source).observe(len(group))
                for pending, result in zip(group, results):
                    pending.finish(result=result)
                if outbox:
                    self._after_commit(outbox)
                for uow in uows:
                    for callback in uow.on_commit:
                        callback()
                return
        for index, pending in enumerate(group):
            COMMANDS_PER_TRANSACTION.labels(self.source).observe(1)
            try:
                pending.finish(result=pending.alone())
            except Exception as exc:  # noqa: BLE001 - handed to the caller waiting for it
                pending.finish(error=exc)
            except BaseException:  # this green thread is being killed: release the others' waits
                for waiting in group[index:]:
                    waiting.finish(error=RuntimeError("the writer was interrupted; try again"))
                raise

    def _commit_group(self, group: list[_PendingWrite]) -> tuple[list, list[UnitOfWork], list[dict]]:
        holder: dict = {}

        def attempt(session):
            # A repeat (a command done before, an event applied before, either twice in this
            # group) fails the group when its record is written again, and is then answered on
            # its own.
            uows, results, records, shared, before_commit = [], [], {}, {}, []
            for pending in group:
                uow = UnitOfWork(self.db, session, self.source, pending.correlationid, pending.causationid,
                                 shared, before_commit, pending.traceparent)
                result = pending.work(uow)
                records.setdefault(pending.log, []).append(pending.record(uow, result))
                results.append(result)
                uows.append(uow)
            for hook in before_commit:
                hook()
            events = [e for uow in uows for e in uow.events]
            outbox = UnitOfWork(self.db, session, self.source, None, None).write_outbox(events, self.owners.owner)
            for collection, documents in records.items():
                self.db[collection].insert_many(documents, session=session)
            holder.update(results=results, uows=uows, outbox=outbox)

        with self._session() as session:
            session.with_transaction(attempt)
        return holder["results"], holder["uows"], holder["outbox"]

    def apply_event(self, handler: str, event: CloudEvent, work: Callable[[UnitOfWork], None]) -> bool:
        """Apply an integration event once per handler; False if it had been applied before.
        With serialized writes, events share group commits with commands."""
        inbox_id = f"{handler}:{event.id}"
        traceparent = tracing.current_traceparent()
        if not self._serialize:
            return self._apply_alone(handler, inbox_id, event, work, traceparent)

        def applied(uow: UnitOfWork) -> bool:
            work(uow)
            return True

        return self._write(_PendingWrite(
            "inbox", event.correlationid or event.id, event.id, applied,
            record=lambda uow, _: {"_id": inbox_id, "type": event.type, "applied_at": uow.now},
            alone=lambda: self._apply_alone(handler, inbox_id, event, work, traceparent), traceparent=traceparent))

    def _apply_alone(self, handler: str, inbox_id: str, event: CloudEvent, work: Callable[[UnitOfWork], None],
                     traceparent: str | None) -> bool:
        def once(uow: UnitOfWork):
            try:
                uow.db.inbox.insert_one({"_id": inbox_id, "type": event.type, "applied_at": uow.now},
                                        session=uow.session)
            except DuplicateKeyError:
                raise AlreadyApplied()
            work(uow)

        try:
            # Not exclusive: the caller holds the write lock already, or there is none.
            self._transaction(once, event.correlationid or event.id, event.id, False, traceparent)
            return True
        except AlreadyApplied:
            INBOX_DUPLICATES.labels(self.source, handler).inc()
            log.info("event %s (%s) already applied by %s: skipped", event.id, event.type, handler)
            return False
