"""Pure rules of a transfer of organizational relationship (组织关系转接):

    requested ─approve→ approved ─receive→ received ─report_in→ completed
        │                  │                  │
        └──── reject / cancel (any open state); expire (approved, received) ────┘

Approval issues the introduction letter (介绍信) with an expiry date; once the date has
passed the letter can be neither received nor reported in on, and a timer expires it."""

from datetime import date, datetime, timedelta

from platform_contracts.member import TransferStatus as S
from platform_contracts.errors import Conflict, InvalidValue

from .domain import local_date

OPEN = frozenset({S.requested, S.approved, S.received})
# action -> (states it may start from, state it leads to)
MOVES = {
    "approve": ({S.requested}, S.approved),
    "receive": ({S.approved}, S.received),
    "report_in": ({S.received}, S.completed),
    "reject": (OPEN, S.rejected),
    "cancel": (OPEN, S.cancelled),
    "expire": ({S.approved, S.received}, S.expired),
}


def new_transfer(*, transfer_id: str, member: dict, to_organization: dict, to_unit_id: str | None,
                 reason: str, by: str, now: datetime) -> dict:
    if to_organization["id"] == member["organization_id"]:
        raise InvalidValue("to_organization_id", "the member already belongs to this organization")
    return {
        "_id": transfer_id, "member_id": member["_id"], "member_name": member["name"],
        "from_organization_id": member["organization_id"], "to_organization_id": to_organization["id"],
        "from_unit_id": member.get("unit_id"), "to_unit_id": to_unit_id,
        "from_division": member["division"], "to_division": to_organization["division"],
        "reason": reason, "status": S.requested.value, "letter_expires_on": None, "requested_by": by,
        "history": [{"status": S.requested.value, "at": now, "by": by, "note": reason}],
        "created_at": now, "updated_at": now,
    }


def is_open(transfer: dict) -> bool:
    return transfer["status"] in OPEN


def letter_expired(transfer: dict, today: date) -> bool:
    """A letter is valid through its expiry date (Beijing time) and expired the day after."""
    expires = transfer.get("letter_expires_on")
    return expires is not None and today > date.fromisoformat(expires)


def advance(transfer: dict, action: str, *, by: str, now: datetime, note: str | None = None) -> dict:
    """The transfer after `action`; 409 from a state the action does not start from, or on a
    letter past its date (only expiring it is still possible then)."""
    sources, target = MOVES[action]
    status = transfer["status"]
    if status not in sources:
        raise Conflict(f"transfer {transfer['_id']} is {status}: it cannot be {target.value}", "transfer_id",
                       f"is {status}; only a transfer that is {' or '.join(sorted(sources))} can be {target.value}")
    if action in ("receive", "report_in") and letter_expired(transfer, local_date(now)):
        # The addressed transfer's letter stands in the way, whatever the request says.
        expires = transfer["letter_expires_on"]
        raise Conflict(f"the introduction letter of transfer {transfer['_id']} expired on {expires}", "transfer_id",
                       f"the letter expired on {expires}")
    transfer["status"] = target.value
    transfer["history"].append({"status": target.value, "at": now, "by": by, "note": note})
    transfer["updated_at"] = now
    return transfer


def approve(transfer: dict, *, valid_days: int, by: str, now: datetime) -> dict:
    advance(transfer, "approve", by=by, now=now, note=f"introduction letter valid for {valid_days} day(s)")
    transfer["letter_expires_on"] = (local_date(now) + timedelta(days=valid_days)).isoformat()
    return transfer
