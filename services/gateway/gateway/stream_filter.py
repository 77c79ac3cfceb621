"""Which logged events a client of the live stream receives, and in what form: pure rules."""

import fnmatch
from dataclasses import dataclass

from platform_contracts.actors import DIVISION_ROLES, Role
from platform_contracts.codes import normalize_division_prefix

from .auth import Principal
from .event_log import NO_DIVISION, LogEntry
from .notifications import NOTIFICATION_CREATED, addressed_to

MAX_TYPE_PATTERNS = 32
STATION_EVENTS = "station."  # the type key of every station.* event (event_log.filter_keys)
APPEAL_EVENTS = "appeal."  # and of every appeal.* event
IMPORT_EVENTS = "import."  # a ledger import's progress: for whoever started it, and admins


@dataclass(frozen=True)
class EventFilter:
    """Which events a client receives: `types` are glob patterns (any may match; none = all),
    `division` a prefix of the event's `division` extension. With a `reader`, notifications are
    only those addressed to them (and pass the division filter when they carry no division),
    and other events only reach the roles that see division-scoped records — and a station
    manager, the events of the stations they manage; a handler, the appeal.* events of appeals
    routed to their departments; anyone, those of the appeals they raised (`raised_by`), that
    were merged with one they raised (`also_raised_by`), or that name them as the department's
    supervisor or the handler (whom the appeal service lets act on it)."""

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
        if entry.type.startswith(IMPORT_EVENTS):
            return self.reader is None or self._of_own_import(entry)
        if self.reader is not None and self.reader.actor.role not in DIVISION_ROLES:
            return (self._of_managed_station(entry) or self._of_own_appeal(entry)) and self._in_division(entry)
        return self._in_division(entry)

    def log_query(self) -> dict:
        """A query on the event log's indexed filter keys (event_log.filter_keys) that every entry
        this filter matches also matches, so that a resume reads little more than it sends:
        plain equality and `$in`, which SecantusDB answers from the index."""
        query = {}
        if self.reader is not None and self.reader.actor.role == Role.station_manager:
            query["type_keys"] = {"$in": [NOTIFICATION_CREATED, STATION_EVENTS, APPEAL_EVENTS, IMPORT_EVENTS]}
        elif self.reader is not None and self.reader.actor.role not in DIVISION_ROLES:
            query["type_keys"] = {"$in": [NOTIFICATION_CREATED, APPEAL_EVENTS, IMPORT_EVENTS]}
        elif self.types and None not in (keys := [_type_key(p) for p in self.types]):
            query["type_keys"] = {"$in": keys}
        if self.division is not None:  # notifications without a division pass a division filter
            query["division_keys"] = {"$in": [self.division, NO_DIVISION]}
        return query

    def _of_own_import(self, entry: LogEntry) -> bool:
        data = entry.envelope.get("data")
        return self.reader.actor.is_admin or (isinstance(data, dict) and data.get("created_by") == self.reader.id)

    def _of_managed_station(self, entry: LogEntry) -> bool:
        return (entry.type.startswith(STATION_EVENTS) and self.reader.actor.role == Role.station_manager
                and self.reader.actor.manages_station(str(entry.envelope.get("subject") or "")))

    def _of_own_appeal(self, entry: LogEntry) -> bool:
        """An appeal.* event of an appeal routed to one of the reader's departments (a handler),
        raised by the reader or merged with one the reader raised, or naming the reader as its
        department's supervisor or its handler."""
        if not entry.type.startswith(APPEAL_EVENTS):
            return False
        data = entry.envelope.get("data")
        if not isinstance(data, dict):
            return False
        actor = self.reader.actor
        department = data.get("department")
        if isinstance(department, str) and actor.handles_department(department):
            return True
        if actor.username in (data.get("raised_by"), data.get("supervisor"), data.get("handler")):
            return True
        also = data.get("also_raised_by")
        return isinstance(also, list) and actor.username in also

    def _in_division(self, entry: LogEntry) -> bool:
        if self.division is None:
            return True
        other = entry.envelope.get("otherdivision")
        return (entry.division or "").startswith(self.division) or bool(other and other.startswith(self.division))


def _type_key(pattern: str) -> str | None:
    """The type key a pattern selects: the type itself, or `prefix.` for `prefix.*`; None for any
    other glob, which the filter then checks entry by entry."""
    glob = "*?[]!"
    if not any(c in glob for c in pattern):
        return pattern
    prefix = pattern[:-1]
    if pattern.endswith(".*") and not any(c in glob for c in prefix):
        return prefix
    return None


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


# Who else an appeal event names: the staff who act on it see them; whoever raised it (or a
# duplicate merged into it) sees only themselves there.
_APPEAL_PEOPLE = ("raised_by", "also_raised_by", "merged_raisers", "supervisor", "handler")


def _appeal_as_raiser_sees_it(entry: LogEntry, reader: Principal) -> dict:
    data = entry.envelope.get("data")
    actor = reader.actor
    if not isinstance(data, dict) or actor.role in DIVISION_ROLES or (
            isinstance(data.get("department"), str) and actor.handles_department(data["department"])) \
            or actor.username in (data.get("supervisor"), data.get("handler")):
        return entry.envelope
    mine = {"raised_by": actor.username if data.get("raised_by") == actor.username else None,
            "also_raised_by": [actor.username] if actor.username in (data.get("also_raised_by") or ()) else [],
            "supervisor": None, "handler": None}
    if "merged_raisers" in data:
        mine["merged_raisers"] = [actor.username] if actor.username in (data.get("merged_raisers") or ()) else []
    return {**entry.envelope, "data": {**{k: v for k, v in data.items() if k not in _APPEAL_PEOPLE}, **mine}}


def envelope_for(entry: LogEntry, reader: Principal) -> dict:
    """The event as `reader` may see it. A coverage.changed also carries the figures of the
    divisions above its own (district, city, all); an operator gets only those in their scope,
    as `GET /coverage` would give them. An appeal event reaches whoever raised the appeal (or a
    duplicate of it) without the other people it names."""
    if entry.type.startswith(APPEAL_EVENTS):
        return _appeal_as_raiser_sees_it(entry, reader)
    if entry.type != "coverage.changed" or reader.actor.role != Role.operator:
        return entry.envelope
    data = entry.envelope.get("data") or {}
    scopes = data.get("scopes")
    if not isinstance(scopes, list):
        return entry.envelope
    visible = [s for s in scopes
               if isinstance(s, dict) and reader.actor.covers_division(str(s.get("division") or ""))]
    return {**entry.envelope, "data": {**data, "scopes": visible}}
