"""Who may do what with members and transfers, decided on the records themselves with the
actor's predicates (platform_contracts.actors):

- admin: everything;
- operator: members and transfers in their division (scope: a division code prefix);
- secretary: members of the organizations in their scope (a list of organization ids);
- worker: their own member record (scope: the member id).

A transfer has two sides: the sending side (the member's organization now) approves, the
receiving side receives; either side may reject; the member or the receiving side reports in."""

from collections.abc import Callable
from dataclasses import dataclass

from platform_contracts.actors import Actor, Role
from platform_contracts.errors import Forbidden


def _ensure(allowed: bool, detail: str) -> None:
    if not allowed:
        raise Forbidden(detail)


# ---- members -------------------------------------------------------------------------------

def ensure_may_manage(actor: Actor, organization_id: str, division: str) -> None:
    _ensure(actor.acts_for(organization_id, division),
            f"organization {organization_id} (division {division}) is outside your scope")


def organization_to_manage(actor: Actor, organization_id: str, field: str,
                           find: Callable[[], dict | None]) -> dict | None:
    """The organization a command names in its body (a registration's), once it is known that
    the caller may manage its members; `find()` asks the organization service for it (any
    status; None: there is none), and is asked only when the answer decides the caller's right.

    The caller's right comes first, decided on what the caller may know, so that a refusal tells
    nothing of the organization (whether it exists, whether it is dissolved):
    - a worker, a station manager or a handler never manages members: refused without asking;
    - a secretary manages the organizations of their list: another is refused without asking,
      and one of theirs is theirs to know about, even that it does not exist;
    - an admin may know of every organization;
    - an operator's right depends on the organization's division, known only once it is found:
      an unknown organization and one outside their division are refused alike, 403 naming the
      field, as a reference outside the caller's scope is refused everywhere in the API (list
      filters, the organization service's parent_id and unit_id) and as the scope matrix expects
      of every refusal; a 422 for an unknown one would tell the two apart.
    Returns the organization found, or None when the caller may be told there is none."""
    if not (actor.is_admin or actor.role == Role.operator or actor.is_secretary_of(organization_id)):
        raise _not_yours(organization_id, field)
    organization = find()
    if organization is None:
        if actor.role == Role.operator:
            raise _not_yours(organization_id, field)
        return None
    if not actor.acts_for(organization_id, organization["division"]):
        raise _not_yours(organization_id, field)
    return organization


def _not_yours(organization_id: str, field: str) -> Forbidden:
    return Forbidden(f"organization {organization_id} does not exist or is outside your scope", field,
                     "does not exist or is outside your scope")


def may_read(actor: Actor, member: dict) -> bool:
    return actor.acts_for(member["organization_id"], member["division"]) or actor.is_member(member["_id"])


def ensure_may_read(actor: Actor, member: dict) -> None:
    _ensure(may_read(actor, member), f"member {member['_id']} is outside your scope")


def ensure_may_override(actor: Actor) -> None:
    _ensure(actor.role in (Role.admin, Role.operator),
            "only an operator or an admin may override the probationary year")


def ensure_may_reveal(actor: Actor, member: dict) -> None:
    _ensure(actor.covers_division(member["division"]),
            "only an admin, or an operator whose division holds the member, may see a full ID number")


def ensure_may_read_audit_log(actor: Actor) -> None:
    _ensure(actor.is_admin, "only an admin may read the audit log")


# ---- transfers -----------------------------------------------------------------------------

def sending_side(actor: Actor, transfer: dict) -> bool:
    return actor.acts_for(transfer["from_organization_id"], transfer["from_division"])


def receiving_side(actor: Actor, transfer: dict) -> bool:
    return actor.acts_for(transfer["to_organization_id"], transfer["to_division"])


def ensure_may_request(actor: Actor, member: dict) -> None:
    _ensure(actor.is_member(member["_id"]) or actor.acts_for(member["organization_id"], member["division"]),
            "only the member or their organization's side may request a transfer")


def ensure_sending_side(actor: Actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer), "only the sending organization's side may approve")


def ensure_receiving_side(actor: Actor, transfer: dict) -> None:
    _ensure(receiving_side(actor, transfer), "only the receiving organization's side may receive")


def ensure_may_report_in(actor: Actor, transfer: dict) -> None:
    _ensure(actor.is_member(transfer["member_id"]) or receiving_side(actor, transfer),
            "only the member or the receiving organization's side may report in")


def ensure_either_side(actor: Actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer) or receiving_side(actor, transfer),
            "only the sending or the receiving organization's side may reject")


def ensure_may_cancel(actor: Actor, transfer: dict) -> None:
    _ensure(actor.is_admin or actor.is_member(transfer["member_id"]) or actor.username == transfer["requested_by"],
            "only the requester, the member or an admin may cancel")


def ensure_may_see_transfer(actor: Actor, transfer: dict) -> None:
    _ensure(sending_side(actor, transfer) or receiving_side(actor, transfer)
            or actor.is_member(transfer["member_id"]), f"transfer {transfer['_id']} is outside your scope")


# ---- lists ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Visibility:
    """What a list may show the actor; all None: everything."""
    division: str | None = None
    organization_ids: tuple[str, ...] | None = None
    member_id: str | None = None


def visibility(actor: Actor) -> Visibility:
    scope = actor.scope
    if actor.is_admin:
        return Visibility()
    if actor.role == Role.operator and isinstance(scope, str) and scope:
        return Visibility(division=scope)
    if actor.role == Role.secretary and isinstance(scope, tuple):
        return Visibility(organization_ids=scope)
    if actor.role == Role.worker and isinstance(scope, str) and scope:
        return Visibility(member_id=scope)
    raise Forbidden(f"a {actor.role} account with this scope has no access to members")


def ensure_filters_in_scope(visible: Visibility, *, division: str | None, organization_id: str | None,
                            organization_division: str | None) -> None:
    """A list filter narrows within the caller's scope; one naming a division or organization
    outside it is refused (as the organization service refuses one) rather than answered
    with an empty page. `organization_division` is where the filtered organization is, if known.
    A worker's list is their own record whatever the filter; a secretary's scope has no
    division, so a division filter only narrows their organizations."""
    if visible.division is not None:
        if division is not None and not division.startswith(visible.division):
            raise Forbidden(f"division {division} is outside your scope {visible.division}", "division",
                            "outside your scope")
        if organization_division is not None and not organization_division.startswith(visible.division):
            raise Forbidden(f"organization {organization_id} (division {organization_division}) "
                            f"is outside your scope {visible.division}", "organization_id", "outside your scope")
    if visible.organization_ids is not None and organization_id is not None \
            and organization_id not in visible.organization_ids:
        raise Forbidden(f"organization {organization_id} is outside your scope", "organization_id",
                        "outside your scope")
