"""Who may do what with stations, decided on the records themselves with the actor's
predicates (platform_contracts.actors):

- admin: everything;
- operator: registers, changes and closes the stations in their division (scope: a prefix);
- station_manager: runs the stations in their scope (a list of station ids): supplies, visits,
  activities and most of the station's details, but not its kind, division or manager, and
  does not close it;
- worker: searches and reads stations, records their own visits, signs up for activities
  and cancels their own sign-ups;
- anyone signed in may search and read stations: where a warm station is and when it is open
  is public (secretaries and handlers included)."""

from platform_contracts.actors import Actor, Role
from platform_contracts.errors import Forbidden


def _ensure(allowed: bool, detail: str, field=None) -> None:
    if not allowed:
        raise Forbidden(detail, field, "outside your scope" if field else None)


def runs(actor: Actor, station: dict) -> bool:
    """Admin, an operator over the station's division, or its station manager."""
    return actor.covers_division(station["division"]) or actor.manages_station(station["_id"])


def is_manager_only(actor: Actor, station: dict) -> bool:
    """Runs the station as its station manager, not as an operator or admin."""
    return not actor.covers_division(station["division"]) and actor.manages_station(station["_id"])


def ensure_may_register(actor: Actor, division: str) -> None:
    actor.require(Role.admin, Role.operator, detail="only an operator or an admin may register a station")
    actor.ensure_division(division, "division")


def ensure_runs(actor: Actor, station: dict) -> None:
    _ensure(runs(actor, station), f"station {station['_id']} (division {station['division']}) is outside your scope")


def ensure_may_close(actor: Actor, station: dict) -> None:
    _ensure(actor.covers_division(station["division"]),
            f"only an admin, or an operator over division {station['division']}, may close station {station['_id']}")


def ensure_may_record_visit(actor: Actor, station: dict, member_id: str | None) -> None:
    """Those who run the station record anyone's visit; a worker records their own."""
    if runs(actor, station):
        return
    _ensure(actor.role == Role.worker, f"station {station['_id']} is outside your scope")
    if member_id is not None:
        _ensure(actor.is_member(member_id), "a worker records their own visit only", "member_id")


def sign_up_member(actor: Actor, station: dict, member_id: str | None) -> str | None:
    """Whom a sign-up is for: a worker signs up themselves (the default); those who run the
    station sign up anyone, or a walk-in with no member id."""
    if runs(actor, station):
        return member_id
    _ensure(actor.role == Role.worker and isinstance(actor.scope, str),
            f"station {station['_id']} is outside your scope")
    if member_id is None:
        return actor.scope
    _ensure(actor.is_member(member_id), "a worker signs up themselves only", "member_id")
    return member_id


def ensure_may_cancel_sign_up(actor: Actor, station: dict, sign_up: dict) -> None:
    mine = actor.username == sign_up["by"] or (sign_up.get("member_id") is not None
                                               and actor.is_member(sign_up["member_id"]))
    _ensure(mine or runs(actor, station), f"sign-up {sign_up['_id']} is not yours to cancel")
