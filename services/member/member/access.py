"""Who may do what with members and transfers. The gateway passes the caller as an actor
{username, role, scope}; the service decides on the records themselves:

- admin: everything;
- operator: members and transfers in their division (scope: a division code prefix);
- secretary: members of the organizations in their scope (a list of organization ids);
- worker: their own member record (scope: the member id).

A transfer has two sides: the sending side (the member's organization now) approves, the
receiving side receives; either side may reject; the member or the receiving side reports in."""

from dataclasses import dataclass

from platform_contracts.problems import Rejected
from service_kit.auth import ADMIN, OPERATOR

SECRETARY = "secretary"
WORKER = "worker"


def _role(actor) -> str:
    if not isinstance(actor, dict) or not actor.get("role"):
        raise Rejected.forbidden("no caller given")
    return actor["role"]


def username(actor: dict) -> str:
    return str(actor.get("username") or f"({_role(actor)})")


def covers_division(actor, division: str) -> bool:
    role = _role(actor)
    scope = actor.get("scope")
    return role == ADMIN or (role == OPERATOR and isinstance(scope, str) and bool(scope)
                             and division.startswith(scope))


def is_secretary_of(actor, organization_id: str) -> bool:
    scope = actor.get("scope")
    return _role(actor) == SECRETARY and isinstance(scope, list) and organization_id in scope


def is_member(actor, member_id: str) -> bool:
    return _role(actor) == WORKER and actor.get("scope") == member_id


def acts_for(actor, organization_id: str, division: str) -> bool:
    """The actor speaks for this organization: admin, its division's operator, its secretary."""
    return covers_division(actor, division) or is_secretary_of(actor, organization_id)


def _ensure(allowed: bool, detail: str) -> None:
    if not allowed:
        raise Rejected.forbidden(detail)


# ---- members -------------------------------------------------------------------------------

def ensure_may_manage(actor, organization_id: str, division: str) -> None:
    _ensure(acts_for(actor, organization_id, division),
            f"organization {organization_id} (division {division}) is outside your scope")


def may_read(actor, member: dict) -> bool:
    return acts_for(actor, member["organization_id"], member["division"]) or is_member(actor, member["_id"])


def ensure_may_read(actor, member: dict) -> None:
    _ensure(may_read(actor, member), f"member {member['_id']} is outside your scope")


def ensure_may_override(actor) -> None:
    _ensure(_role(actor) in (ADMIN, OPERATOR), "only an operator or an admin may override the probationary year")


def ensure_may_reveal(actor, member: dict) -> None:
    _ensure(covers_division(actor, member["division"]),
            "only an admin, or an operator whose division holds the member, may see a full ID number")


def ensure_may_read_audit_log(actor) -> None:
    _ensure(_role(actor) == ADMIN, "only an admin may read the audit log")


# ---- transfers -----------------------------------------------------------------------------

def sending_side(actor, transfer: dict) -> bool:
    return acts_for(actor, transfer["from_organization_id"], transfer["from_division"])


def receiving_side(actor, transfer: dict) -> bool:
    return acts_for(actor, transfer["to_organization_id"], transfer["to_division"])


def ensure_may_request(actor, member: dict) -> None:
    _ensure(is_member(actor, member["_id"]) or acts_for(actor, member["organization_id"], member["division"]),
            "only the member or their organization's side may request a transfer")


def ensure_sending_side(actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer), "only the sending organization's side may approve")


def ensure_receiving_side(actor, transfer: dict) -> None:
    _ensure(receiving_side(actor, transfer), "only the receiving organization's side may receive")


def ensure_may_report_in(actor, transfer: dict) -> None:
    _ensure(is_member(actor, transfer["member_id"]) or receiving_side(actor, transfer),
            "only the member or the receiving organization's side may report in")


def ensure_either_side(actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer) or receiving_side(actor, transfer),
            "only the sending or the receiving organization's side may reject")


def ensure_may_cancel(actor, transfer: dict) -> None:
    _ensure(_role(actor) == ADMIN or is_member(actor, transfer["member_id"])
            or username(actor) == transfer["requested_by"],
            "only the requester, the member or an admin may cancel")


def ensure_may_see_transfer(actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer) or receiving_side(actor, transfer)
            or is_member(actor, transfer["member_id"]), f"transfer {transfer['_id']} is outside your scope")


# ---- lists ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Visibility:
    """What a list may show the actor; all None: everything."""
    division: str | None = None
    organization_ids: tuple[str, ...] | None = None
    member_id: str | None = None


def visibility(actor) -> Visibility:
    role, scope = _role(actor), actor.get("scope")
    if role == ADMIN:
        return Visibility()
    if role == OPERATOR and isinstance(scope, str) and scope:
        return Visibility(division=scope)
    if role == SECRETARY and isinstance(scope, list):
        return Visibility(organization_ids=tuple(scope))
    if role == WORKER and isinstance(scope, str) and scope:
        return Visibility(member_id=scope)
    raise Rejected.forbidden(f"a {role} account with this scope has no access to members")


def ensure_filters_in_scope(visible: Visibility, *, division: str | None, organization_id: str | None,
                            organization_division: str | None) -> None:
    """A list filter narrows within the caller's scope; one naming a division or organization
    outside it is refused (403, as the organization service refuses one) rather than answered
    with an empty page. `organization_division` is where the filtered organization is, if known.
    A worker's list is their own record whatever the filter; a secretary's scope has no
    division, so a division filter only narrows their organizations."""
    if visible.division is not None:
        if division is not None and not division.startswith(visible.division):
            raise _outside("division", f"division {division} is outside your scope {visible.division}")
        if organization_division is not None and not organization_division.startswith(visible.division):
            raise _outside("organization_id", f"organization {organization_id} (division {organization_division}) "
                                              f"is outside your scope {visible.division}")
    if visible.organization_ids is not None and organization_id is not None \
            and organization_id not in visible.organization_ids:
        raise _outside("organization_id", f"organization {organization_id} is outside your scope")


def _outside(field: str, detail: str) -> Rejected:
    return Rejected.make(403, detail, [{"loc": ["query", field], "msg": "outside your scope"}])
