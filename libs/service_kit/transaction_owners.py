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
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

log = logging.getLogger(__name__)

COLLECTION = "transaction_owners"
DEFAULT_HEARTBEAT_SECONDS = 2.0
STALE_AFTER_HEARTBEATS = 4  # missed heartbeats before a process counts as gone
MAX_SESSIONS_RECORDED = 256  # the driver's pool is far smaller; a bound against churn


def heartbeat_seconds_from(config) -> float:
    return float(config.get("TRANSACTION_OWNER_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))


class TransactionOwners:
    """Each process's record: `sessions` (lsid documents), `beats` (a counter its heartbeat
    raises), `heartbeat_seconds` (its own interval) and `heartbeat_at` (for operators only).

    A process is gone when its counter has not moved for 4 of its own intervals, as another
    process observes it on its own monotonic clock: no two clocks are compared, and what was
    observed before a failed heartbeat (the database away) is forgotten, so an outage that
    stopped every heartbeat does not make every process look dead when it ends. Every replica
    on a database must log in as the same database user: killSessions ends only the caller's
    own user's sessions (another's need the killAnySession privilege)."""

    def __init__(self, db, heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS, owner: str | None = None,
                 clock=time.monotonic):
        self.collection = db[COLLECTION]
        self.admin = db.client.admin
        self.owner = owner or uuid.uuid4().hex
        self.heartbeat_seconds = heartbeat_seconds
        self._clock = clock
        # Most recently used last: the bound drops a session unused the longest.
        self._sessions: OrderedDict[bytes, dict] = OrderedDict()
        self._seen: dict[str, tuple[int, float]] = {}  # owner -> (its beats, when they last moved here)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._finished = threading.Event()

    def start(self, spawn) -> None:
        """`spawn` runs the heartbeat in a thread of its own (a green thread in the services),
        as the outbox relay's."""
        self._stopped.clear()
        self._finished.clear()
        spawn(self._run_until_stopped)

    def stop(self, timeout: float = 5.0, leave: bool = True) -> None:
        """The heartbeat ends (a beat under way first, or it would put the record back); on a
        clean stop (`leave`) the record goes, the driver ending the sessions itself. Without,
        the record stays for another process to find silent and end what is left open."""
        self._stopped.set()
        self._finished.wait(timeout)
        if not leave:
            return
        try:
            self.leave()
        except Exception:  # noqa: BLE001 - left behind, the record is seen silent and another clears it
            log.warning("could not remove this process's transaction owner record", exc_info=True)

    def _run_until_stopped(self) -> None:
        try:
            self.run(self._stopped)
        finally:
            self._finished.set()

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
                self._sessions.move_to_end(key)
                return None
            if len(self._sessions) >= MAX_SESSIONS_RECORDED:
                self._sessions.popitem(last=False)
            self._sessions[key] = lsid
        return lsid

    def record(self, lsid: dict) -> None:
        self.collection.update_one({"_id": self.owner}, {"$addToSet": {"sessions": lsid}, **self._heartbeat()},
                                   upsert=True)

    def _heartbeat(self) -> dict:
        return {"$inc": {"beats": 1},
                "$set": {"heartbeat_at": datetime.now(timezone.utc), "heartbeat_seconds": self.heartbeat_seconds}}

    def beat(self) -> int:
        """Renew this process's heartbeat (with every session it has used) and end the sessions
        of processes seen silent for 4 of their heartbeats; how many such processes it found."""
        with self._lock:
            sessions = list(self._sessions.values())
        try:
            if sessions:
                heartbeat = self._heartbeat()
                heartbeat["$set"]["sessions"] = sessions
                self.collection.update_one({"_id": self.owner}, heartbeat, upsert=True)
            others = list(self.collection.find({"_id": {"$ne": self.owner}}))
        except Exception:
            with self._lock:
                self._seen.clear()  # silence observed across a failed heartbeat proves nothing
            raise
        now = self._clock()
        with self._lock:
            self._seen = {record["_id"]: self._seen[record["_id"]]
                          if self._seen.get(record["_id"], (None,))[0] == record.get("beats")
                          else (record.get("beats"), now) for record in others}
            gone = [record for record in others if self._is_stale(record, now)]
        for record in gone:
            try:
                if record.get("sessions"):
                    self.admin.command("killSessions", record["sessions"])
                # Only the record as read: an owner that was merely slow and has beaten since stays.
                self.collection.delete_one({"_id": record["_id"], "beats": record.get("beats")})
            except Exception:  # noqa: BLE001 - the others are still ended; this one at the next beat
                log.warning("could not end the database sessions of process %s", record["_id"], exc_info=True)
                continue
            log.warning("ended the %d database sessions of process %s, silent for %d heartbeats "
                        "(their open transactions are aborted, not left to expire)",
                        len(record.get("sessions", [])), record["_id"], STALE_AFTER_HEARTBEATS)
        return len(gone)

    def _is_stale(self, record: dict, now: float) -> bool:
        seen = self._seen.get(record["_id"])
        interval = float(record.get("heartbeat_seconds") or self.heartbeat_seconds)
        return seen is not None and seen[0] == record.get("beats") and now - seen[1] >= STALE_AFTER_HEARTBEATS * interval

    def others_alive(self) -> list[str]:
        """The other processes on this database not seen silent for 4 of their heartbeats."""
        others = list(self.collection.find({"_id": {"$ne": self.owner}}, {"beats": 1, "heartbeat_seconds": 1}))
        now = self._clock()
        with self._lock:
            return [record["_id"] for record in others if not self._is_stale(record, now)]

    def leave(self) -> None:
        """This process's record removed (`stop` does it once the heartbeat has ended)."""
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
