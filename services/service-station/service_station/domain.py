"""Pure rules of service stations: the station's record and its changes, closing, supplies and
their low-threshold crossings, visits by local day and hour, activities and their places. No
I/O: repository.py loads and saves, application.py composes the two inside a transaction.

Times are kept in UTC and read in China's time (Asia/Shanghai keeps no daylight saving)."""

import re
from datetime import date, datetime, timedelta, timezone

from platform_contracts.errors import Conflict, Forbidden, InvalidValue
from platform_contracts.station import OPEN_INTERVAL_DAYS, ActivityStatus, SignUpStatus, StationStatus

CHINA_TIME = timezone(timedelta(hours=8))
# What a station manager may not change of their own station: what it is, where it belongs
# (their operators' scope) and who runs it.
REGISTRY_FIELDS = ("kind", "division", "manager")
LOW, RESTOCKED = "station.supply_low", "station.supply_restocked"


def local_date(at: datetime) -> date:
    return at.astimezone(CHINA_TIME).date()


def local_day_start(day: date) -> datetime:
    """Midnight of `day` in China, as an aware datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TIME)


# ---- stations ------------------------------------------------------------------------------

def new_station(fields: dict, *, station_id: str, by: str, now: datetime) -> dict:
    """`fields`: the registration's values, the location already in WGS-84 and free text masked."""
    return {
        "_id": station_id, **fields, "supplies": {}, "version": 1, "registered_by": by,
        "registered_at": now, "updated_at": now, "closed_at": None,
        "open_intervals": [], "intervals_from": None,
    }


def ensure_not_closed(station: dict) -> None:
    if station["status"] == StationStatus.closed:
        raise Conflict(f"station {station['_id']} is closed", None, "the station is closed")


def ensure_changes_allowed(fields: dict, manager_only: bool) -> None:
    """A station manager runs the station; its kind, division and manager are its operators'."""
    if not manager_only:
        return
    for field in REGISTRY_FIELDS:
        if field in fields:
            raise Forbidden(f"a station manager may not change the station's {field}", field,
                            "only an operator or an admin may change this")


def apply_changes(station: dict, fields: dict, now: datetime) -> list[str]:
    """Apply the fields that differ; the names of those that changed (none: nothing written)."""
    ensure_not_closed(station)
    changed = sorted(k for k, v in fields.items() if station.get(k) != v)
    if changed:
        station.update({k: fields[k] for k in changed})
        station["version"] += 1
        station["updated_at"] = now
    return changed


def close(station: dict, *, by: str, now: datetime) -> None:
    if station["status"] == StationStatus.closed:
        raise Conflict(f"station {station['_id']} is closed already", None, "closed already")
    station.update(status=StationStatus.closed.value, closed_at=now, closed_by=by, updated_at=now,
                   version=station["version"] + 1, open_intervals=[])


def is_open_at(station: dict, at: datetime) -> bool:
    """From the stored open intervals (see application.refresh_intervals): no parsing here."""
    if station["status"] != StationStatus.active:
        return False
    return any(i["start"] <= at < i["end"] for i in station.get("open_intervals") or ())


def check_open_at(at: datetime, now: datetime, field: str = "open_at") -> None:
    """`open_at` must lie where open intervals are kept: from today's start to 7 days on."""
    first = local_day_start(local_date(now))
    if not first <= at < first + timedelta(days=OPEN_INTERVAL_DAYS):
        raise InvalidValue(field, f"must lie between {first.isoformat()} and "
                                  f"{(first + timedelta(days=OPEN_INTERVAL_DAYS)).isoformat()} (Asia/Shanghai): "
                                  f"open times are kept for today and the {OPEN_INTERVAL_DAYS - 1} days after")


# ---- supplies ------------------------------------------------------------------------------

_ITEM = re.compile(r"[\w-]{1,40}")


def supply_item(item) -> str:
    """An item names a field of the stored station: word characters (any script) and dashes."""
    if not isinstance(item, str) or not _ITEM.fullmatch(item):
        raise InvalidValue("item", "1 to 40 letters, digits, _ or -, e.g. water or 矿泉水")
    return item


def is_low(quantity: int, low_threshold: int) -> bool:
    return quantity < low_threshold


def crossing(was_low: bool, now_low: bool) -> str | None:
    """The event a change of a supply's state gives: once per crossing of its threshold."""
    if now_low and not was_low:
        return LOW
    if was_low and not now_low:
        return RESTOCKED
    return None


def set_supply(station: dict, item: str, *, quantity: int, low_threshold: int, unit: str | None,
               now: datetime) -> tuple[dict, str | None]:
    """The item's new record and the crossing it makes. A new item that starts below its
    threshold is low from the start, and says so."""
    ensure_not_closed(station)
    before = station["supplies"].get(item)
    was_low = before is not None and is_low(before["quantity"], before["low_threshold"])
    supply = {"quantity": quantity, "low_threshold": low_threshold, "unit": unit, "updated_at": now}
    return supply, crossing(was_low, is_low(quantity, low_threshold))


def adjustment_crossing(after: dict, delta: int) -> str | None:
    """`after`: the item as the atomic update left it (its quantity already moved by delta)."""
    quantity, threshold = after["quantity"], after["low_threshold"]
    return crossing(is_low(quantity - delta, threshold), is_low(quantity, threshold))


def too_few(station_id: str, item: str, in_stock: int, delta: int) -> Conflict:
    return Conflict(f"{item} at station {station_id}: {in_stock} in stock, cannot take {-delta}; nothing was changed",
                    "delta", f"would leave {in_stock + delta}: quantities never go below 0")


# ---- visits --------------------------------------------------------------------------------

def day_and_hour(at: datetime) -> tuple[str, int]:
    local = at.astimezone(CHINA_TIME)
    return local.date().isoformat(), local.hour


def utilisation_day(document: dict) -> dict:
    """A stored day of counts as the contract's UtilisationDay."""
    hours = document.get("hours") or {}
    visits = {k: int(v) for k, v in (document.get("visits") or {}).items()}
    check_ins = int(document.get("check_ins", 0))
    return {"day": document["day"], "total": sum(visits.values()) + check_ins, "visits": visits,
            "check_ins": check_ins, "hours": [int(hours.get(f"{h:02d}", 0)) for h in range(24)]}


# ---- activities ----------------------------------------------------------------------------

def new_activity(fields: dict, *, station: dict, activity_id: str, by: str, now: datetime) -> dict:
    ensure_not_closed(station)
    if fields["starts_at"] <= now:
        raise InvalidValue("starts_at", "must be in the future")
    if fields["ends_at"] - fields["starts_at"] > timedelta(days=31):
        raise InvalidValue("ends_at", "an activity lasts at most 31 days")
    return {"_id": activity_id, "station_id": station["_id"], "division": station["division"], **fields,
            "signed_up": 0, "status": ActivityStatus.scheduled.value, "created_by": by, "created_at": now,
            "cancelled_at": None, "cancel_reason": None}


def ensure_open_for_sign_ups(activity: dict, now: datetime) -> None:
    if activity["status"] != ActivityStatus.scheduled:
        raise Conflict(f"activity {activity['_id']} is {activity['status']}", None, "the activity is cancelled")
    if activity["starts_at"] <= now:
        raise Conflict(f"activity {activity['_id']} has started: sign-ups are closed", None, "sign-ups are closed")


def full(activity: dict) -> Conflict:
    return Conflict(f"activity {activity['_id']} is full: {activity['capacity']} places, all taken", None,
                    "no places left")


def cancel_activity(activity: dict, *, reason: str, now: datetime) -> None:
    activity.update(status=ActivityStatus.cancelled.value, cancelled_at=now, cancel_reason=reason)


def still_open(activity: dict, now: datetime) -> bool:
    """Scheduled and not over: what closing a station cancels."""
    return activity["status"] == ActivityStatus.scheduled and activity["ends_at"] > now


def new_sign_up(*, activity: dict, sign_up_id: str, member_id: str | None, by: str, now: datetime) -> dict:
    return {"_id": sign_up_id, "activity_id": activity["_id"], "station_id": activity["station_id"],
            "member_id": member_id, "by": by, "status": SignUpStatus.active.value, "signed_up_at": now,
            "cancelled_at": None}
