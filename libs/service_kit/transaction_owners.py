"""Ending the transactions a killed process left open.

The database aborts a transaction whose client has gone only when the transaction's lifetime
runs out (MongoDB's transactionLifetimeLimitSeconds, 60 s; SecantusDB's the same), and until
then every write that touches what it wrote waits or conflicts: after a `kill -9` or a lost
node, the writes that follow stall for a minute. So each process records, in one document of a
shared collection, the session ids its transactions run under (the driver pools and reuses
them: a handful per process) beside a heartbeat; any process that finds another's heartbeat
stale ends those sessions with `killSessions`, which aborts their transactions at once, and
removes the record.

A process that was only paused longer than `stale_seconds` loses its open transactions the same
way: they fail as transient errors, the driver runs them again, and its next heartbeat records
its sessions again. Nothing is lost, it is only late.

Sync PyMongo: the nameko services call it in place, the gateway through a thread."""

import logging
import threading
import uuid
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

COLLECTION = "transaction_owners"
DEFAULT_HEARTBEAT_SECONDS = 2.0
STALE_AFTER_HEARTBEATS = 4  # missed heartbeats before a process counts as gone
MAX_SESSIONS_RECORDED = 256  # the driver's pool is far smaller; a bound against churn


def heartbeat_seconds_from(config) -> float:
    return float(config.get("TRANSACTION_OWNER_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))


class TransactionOwners:
    def __init__(self, db, heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS, owner: str | None = None):
        self.collection = db[COLLECTION]
        self.admin = db.client.admin
        self.owner = owner or uuid.uuid4().hex
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = timedelta(seconds=heartbeat_seconds * STALE_AFTER_HEARTBEATS)
        self._sessions: dict[bytes, dict] = {}  # session id bytes -> the lsid document
        self._lock = threading.Lock()

    def session_started(self, session) -> None:
        """Call before a transaction starts under `session` (outside it): records the session
        the first time this process uses it."""
        if (lsid := self.new_session(session)) is not None:
            self.record(lsid)

    def new_session(self, session) -> dict | None:
        """The session's id if this process has not recorded it yet (no database call: an
        async caller records it with `record` in a thread)."""
        lsid = session.session_id
        key = bytes(lsid["id"])
        with self._lock:
            if key in self._sessions:
                return None
            if len(self._sessions) >= MAX_SESSIONS_RECORDED:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[key] = lsid
        return lsid

    def record(self, lsid: dict) -> None:
        self.collection.update_one({"_id": self.owner},
                                   {"$addToSet": {"sessions": lsid}, "$set": {"heartbeat_at": _now()}},
                                   upsert=True)

    def beat(self) -> int:
        """Renew this process's heartbeat (with every session it has used) and end the sessions
        of processes whose heartbeat is stale; how many such processes it found."""
        now = _now()
        with self._lock:
            sessions = list(self._sessions.values())
        if sessions:
            self.collection.update_one({"_id": self.owner},
                                       {"$set": {"heartbeat_at": now, "sessions": sessions}}, upsert=True)
        gone = list(self.collection.find({"heartbeat_at": {"$lt": now - self.stale_after}}))
        for record in gone:
            if record.get("sessions"):
                self.admin.command("killSessions", record["sessions"])
            # Only the record as read: an owner that was merely slow and has beaten since stays.
            self.collection.delete_one({"_id": record["_id"], "heartbeat_at": record["heartbeat_at"]})
            log.warning("ended the %d database sessions of a process not heard from since %s "
                        "(their open transactions are aborted, not left to expire)",
                        len(record.get("sessions", [])), record["heartbeat_at"].isoformat())
        return len(gone)

    def others_alive(self) -> list[str]:
        """The other processes on this database whose heartbeat is not stale."""
        fresh = _now() - self.stale_after
        return [record["_id"] for record in self.collection.find(
            {"heartbeat_at": {"$gte": fresh}, "_id": {"$ne": self.owner}}, {"_id": 1})]

    def leave(self) -> None:
        """On a clean stop: the driver ends its sessions itself; the record goes."""
        self.collection.delete_one({"_id": self.owner})

    def run(self, stopped: threading.Event) -> None:
        """Beat every heartbeat_seconds until `stopped` is set; a failed beat (the database
        away) is logged and tried again at the next."""
        while not stopped.is_set():
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the loop outlives a database outage
                log.warning("transaction owners heartbeat failed; trying again", exc_info=True)
            stopped.wait(self.heartbeat_seconds)


def _now() -> datetime:
    return datetime.now(timezone.utc)
