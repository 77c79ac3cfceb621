"""Pure rules of appeals: the record and its workflow, routing, deadlines in working days,
overdue and escalation, likely duplicates, satisfaction and reopening. No I/O: repository.py
loads and saves, application.py composes the two inside a transaction.

Times are kept in UTC; deadlines are counted in China's working days (Asia/Shanghai)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from platform_contracts.appeal import OPEN_STATUSES, AppealCategory, AppealStatus, NoteVisibility
from platform_contracts.errors import Conflict, InvalidValue
from platform_contracts.geo import distance_m
from service_kit.china_calendar import ZONE, CalendarDataMissing, ChinaCalendar

# Working days from acceptance to the deadline, and whether an appeal may be anonymous, per
# category until an admin sets them (PUT /appeal-categories/{category}). Hazards are urgent
# (a rider's report of a broken manhole cover); suggestions wait for a meeting.
DEFAULT_SLA_WORKING_DAYS = {
    AppealCategory.rights: 5, AppealCategory.labour_protection: 5, AppealCategory.legal: 10,
    AppealCategory.housing: 15, AppealCategory.insurance: 10, AppealCategory.hazard: 2,
    AppealCategory.enterprise_difficulty: 10, AppealCategory.suggestion: 20, AppealCategory.other: 10,
}
ANONYMOUS_BY_DEFAULT = frozenset({AppealCategory.hazard, AppealCategory.suggestion, AppealCategory.other})

# A rating at or below this, or "not solved", reopens the appeal (within the feedback window).
REOPENING_RATING = 2

# action -> the statuses it may be taken from.
ALLOWED_FROM = {
    "accept": (AppealStatus.submitted,),
    "assign": OPEN_STATUSES,
    "resolve": (AppealStatus.accepted, AppealStatus.assigned),
    "reject": OPEN_STATUSES,
    "close": (AppealStatus.resolved,),
    "rate": (AppealStatus.resolved, AppealStatus.closed),
    "reopen": (AppealStatus.resolved, AppealStatus.closed),
    "merge": OPEN_STATUSES,
    "merge_into": (*OPEN_STATUSES, AppealStatus.resolved),
}


def ensure_may(appeal: dict, action: str) -> None:
    """Conflict (409) when `action` is not a transition from the appeal's status."""
    status = AppealStatus(appeal["status"])
    if status not in ALLOWED_FROM[action]:
        allowed = ", ".join(s.value for s in ALLOWED_FROM[action])
        raise Conflict(f"appeal {appeal['_id']} is {status.value}: it may be {action}ed only when {allowed}"
                       if action != "merge_into" else
                       f"appeal {appeal['_id']} is {status.value}: appeals are merged only into an open or "
                       f"resolved one", None, f"the appeal is {status.value}")


def is_open(appeal: dict) -> bool:
    return AppealStatus(appeal["status"]) in OPEN_STATUSES


# ---- the record ----------------------------------------------------------------------------

def history_entry(action: str, *, actor: str, status: str, at: datetime, note: str | None = None,
                  visibility: NoteVisibility = NoteVisibility.public, **extra) -> dict:
    return {"at": at, "action": action, "actor": actor, "status": str(status), "note": note,
            "visibility": visibility.value, **{k: v for k, v in extra.items() if v is not None}}


def new_appeal(fields: dict, *, appeal_id: str, raised_by: str | None, now: datetime, actor: str) -> dict:
    """`fields`: the submission's values, free text masked, contact encrypted, location stored."""
    appeal = {
        "_id": appeal_id, **fields, "raised_by": raised_by, "status": AppealStatus.submitted.value,
        "department": None, "handler": None, "due_at": None, "due_provisional": False, "overdue": False,
        "overdue_at": None, "escalated_to": None, "satisfaction": None, "duplicate_of": None, "duplicates": [],
        "also_raised_by": [], "history": [], "version": 1, "submitted_at": now, "updated_at": now,
        "accepted_at": None, "resolved_at": None, "closed_at": None,
    }
    appeal["history"].append(history_entry("submitted", actor=actor, status=appeal["status"], at=now))
    return appeal


def record(appeal: dict, action: str, *, actor: str, at: datetime, note: str | None = None,
           visibility: NoteVisibility = NoteVisibility.public, **extra) -> None:
    """One step in the appeal's history; the appeal's version moves on."""
    appeal["history"].append(history_entry(action, actor=actor, status=appeal["status"], at=at, note=note,
                                           visibility=visibility, **extra))
    appeal["version"] += 1
    appeal["updated_at"] = at


# ---- routing -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    category: str | None
    division: str | None
    department_id: str


def route(rules: Iterable[Rule], category: str, division: str) -> str | None:
    """The department for an appeal: among the rules whose division prefix holds the appeal's
    division (none: everywhere) and whose category is its own (none: every category), the one
    with the longest prefix; at equal length a rule for the category beats a default. None when
    no rule matches (the division's operators route it by hand)."""
    def fits(rule: Rule) -> bool:
        return ((rule.category is None or rule.category == category)
                and (rule.division is None or division.startswith(rule.division)))

    ranked = sorted((r for r in rules if fits(r)),
                    key=lambda r: (len(r.division or ""), r.category is not None), reverse=True)
    return ranked[0].department_id if ranked else None


def escalation_division(department_division: str) -> str:
    """The level above a department's: a community (12 digits) → its street, a street (9) →
    its district, a district (6) → its city (4)."""
    return {12: department_division[:9], 9: department_division[:6]}.get(len(department_division),
                                                                        department_division[:4])


# ---- deadlines -----------------------------------------------------------------------------

def deadline(calendar: ChinaCalendar, start: datetime, working_days: int) -> tuple[datetime, bool]:
    """`working_days` working days after `start` (ChinaCalendar.add_working_days: the first
    working day after start's date counts as one, holidays and weekends skipped, an adjusted
    Saturday counted), and whether it is provisional. A day beyond the calendar's data (the
    State Council announces a year in November or December, and an admin loads it) is counted
    as an ordinary weekday or weekend day, and the deadline marked provisional: it is counted
    again when that year's calendar arrives."""
    try:
        return calendar.add_working_days(start, working_days).astimezone(timezone.utc), False
    except CalendarDataMissing:
        pass
    local = start.astimezone(ZONE)
    day, counted = local.date(), 0
    while counted < working_days:
        day += timedelta(days=1)
        known = calendar.covers(day)
        if (calendar.is_working_day(day) if known else day.weekday() < 5):
            counted += 1
    return datetime.combine(day, local.time(), tzinfo=ZONE).astimezone(timezone.utc), True


def start_clock(appeal: dict, calendar: ChinaCalendar, sla_working_days: int, now: datetime) -> None:
    """Acceptance (or a reopening) starts the clock: a new deadline, not overdue."""
    appeal["due_at"], appeal["due_provisional"] = deadline(calendar, now, sla_working_days)
    appeal["clock_started_at"] = now
    appeal["sla_working_days"] = sla_working_days
    appeal["overdue"] = False
    appeal["escalated_to"] = None
    appeal["overdue_at"] = appeal["due_at"]


def stop_clock(appeal: dict) -> None:
    """Resolved, rejected, merged: no longer waiting on anyone (`overdue` stays as it was)."""
    appeal["overdue_at"] = None


def is_overdue(appeal: dict, now: datetime) -> bool:
    return appeal.get("overdue_at") is not None and appeal["overdue_at"] <= now and is_open(appeal)


OVERDUE_STEPS = 2  # the history entries (and versions) an overdue flag adds: overdue, escalated


def mark_overdue(appeal: dict, department: dict | None, now: datetime) -> tuple[dict, list[dict]]:
    """The appeal passed its deadline: overdue, escalated to the level above its department's
    (or above its own street when it has no department). Applied to `appeal`, and returned as
    the fields set and the history entries added (OVERDUE_STEPS of them, each a version), so
    that the store can write just those, for many appeals at once (the overdue sweep)."""
    base = department["division"] if department else appeal["division"][:9]
    changes = {"overdue": True, "overdue_at": None, "escalated_to": escalation_division(base), "updated_at": now}
    entries = [history_entry("overdue", actor="system", status=appeal["status"], at=now),
               history_entry("escalated", actor="system", status=appeal["status"], at=now,
                             note=f"escalated to division {changes['escalated_to']}",
                             visibility=NoteVisibility.internal)]
    appeal.update(changes, version=appeal["version"] + OVERDUE_STEPS)
    appeal["history"] = [*appeal.get("history", []), *entries]
    return changes, entries


# ---- feedback ------------------------------------------------------------------------------

def reopens(rating: int, solved: bool) -> bool:
    return not solved or rating <= REOPENING_RATING


def ensure_within_window(appeal: dict, now: datetime, window_days: int, what: str) -> None:
    resolved_at = appeal.get("resolved_at")
    if resolved_at is None or now - resolved_at > timedelta(days=window_days):
        raise Conflict(f"appeal {appeal['_id']} was resolved more than {window_days} days ago: it can no longer be "
                       f"{what}", None, f"more than {window_days} days since it was resolved")


def ensure_not_rated(appeal: dict) -> None:
    if appeal.get("satisfaction") is not None:
        raise Conflict(f"appeal {appeal['_id']} has been rated for this resolution already", None, "rated already")


def reopen(appeal: dict, calendar: ChinaCalendar, now: datetime, *, actor: str, reason: str) -> None:
    """Back to its department (accepted, no handler) with a new deadline; the rating of the
    resolution it reopens stays in the history."""
    appeal.update(status=AppealStatus.accepted.value, handler=None, resolved_at=None, closed_at=None,
                  satisfaction=None, questionnaire_sent_at=None)
    start_clock(appeal, calendar, appeal.get("sla_working_days") or 1, now)
    record(appeal, "reopened", actor=actor, at=now, note=reason)


# ---- duplicates ----------------------------------------------------------------------------

def likely_duplicate(candidate: dict, *, appeal_id: str | None, category: str | None, since: datetime) -> bool:
    """An open appeal (not itself, not merged away) of the category, submitted since `since`."""
    return (candidate["_id"] != appeal_id and is_open(candidate) and candidate.get("duplicate_of") is None
            and (category is None or candidate["category"] == category) and candidate["submitted_at"] >= since)


def nearby_duplicates(candidates: Iterable[dict], lng: float, lat: float, radius_m: float, *,
                      appeal_id: str | None, category: str | None, since: datetime,
                      limit: int) -> list[tuple[dict, float]]:
    """(appeal, metres) of the likely duplicates within radius_m of (lng, lat), nearest first.
    The candidates come from the grid-cell index (service_kit.nearby); this decides."""
    found = []
    for candidate in candidates:
        if not likely_duplicate(candidate, appeal_id=appeal_id, category=category, since=since):
            continue
        lng2, lat2 = candidate["location"]["coordinates"][:2]
        metres = distance_m(lng, lat, lng2, lat2)
        if metres <= radius_m:
            found.append((metres, candidate["_id"], candidate))
    return [(appeal, metres) for metres, _, appeal in sorted(found, key=lambda t: t[:2])[:limit]]


def merge(duplicate: dict, into: dict, *, actor: str, now: datetime, note: str | None) -> None:
    """`duplicate` is closed as a duplicate of `into`; whoever raised it (and anything merged
    into it before) is told when `into` is resolved."""
    if duplicate["_id"] == into["_id"]:
        raise InvalidValue("into", "an appeal cannot be merged into itself")
    if into.get("duplicate_of"):
        raise InvalidValue("into", f"appeal {into['_id']} is itself a duplicate of {into['duplicate_of']}: "
                                   "merge into that one")
    ensure_may(duplicate, "merge")
    ensure_may(into, "merge_into")
    duplicate.update(status=AppealStatus.closed.value, duplicate_of=into["_id"], closed_at=now)
    stop_clock(duplicate)
    record(duplicate, "merged", actor=actor, at=now, note=note or f"a duplicate of appeal {into['_id']}")
    raised = [u for u in (duplicate.get("raised_by"), *duplicate.get("also_raised_by", ())) if u]
    into["also_raised_by"] = sorted(set(into.get("also_raised_by", [])) | set(raised) - {into.get("raised_by")})
    into["duplicates"] = [*into.get("duplicates", []), duplicate["_id"]]
    record(into, "merged", actor=actor, at=now, note=f"appeal {duplicate['_id']} merged into this one",
           visibility=NoteVisibility.internal)


# ---- contact details -----------------------------------------------------------------------

def mask_name(name: str | None) -> str | None:
    """Only the first character (the family name, in Chinese): 张**."""
    if not name:
        return name
    return name[0] + "*" * max(len(name) - 1, 1)


def local_date(at: datetime) -> date:
    return at.astimezone(ZONE).date()
