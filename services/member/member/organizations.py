"""The organization service, as the member service asks it: does an organization or a unit
exist, and is it active? Asked over RPC before a transaction opens (a transaction must not
wait on another service); the organization service owns the answer. It is asked only once the
caller's right is decided as far as it can be without the answer (service.py), and what it says
is passed on only to a caller who may know it."""

import os

import eventlet
from nameko.exceptions import UnknownService, get_module_path, registry

from platform_contracts.errors import InvalidValue, Unavailable
from platform_contracts.organization import OrganizationStatus, UnitStatus
from platform_contracts.problems import Rejected

# The organization service refuses with Rejected; let it arrive here as Rejected.
registry[get_module_path(Rejected)] = Rejected

# Reading any organization or unit is an admin's right; the member service checks its own callers.
SYSTEM_ACTOR = {"username": "member-service", "role": "admin", "scope": None}

# nameko's RpcProxy waits for a reply for ever: a worker must not, or an organization service
# that is down (its queue still there) would take every worker of this service with it.
RPC_TIMEOUT_SECONDS = float(os.environ.get("ORGANIZATION_RPC_TIMEOUT_SECONDS", 5))


def _ask(method, *args):
    try:
        with eventlet.Timeout(RPC_TIMEOUT_SECONDS):
            return method(*args, actor=SYSTEM_ACTOR)
    except eventlet.Timeout:
        raise Unavailable("the organization service did not answer in time; nothing was changed, "
                          "try again shortly") from None
    except UnknownService:
        raise Unavailable("the organization service is not running; nothing was changed, try again shortly") from None


def _find(fetch, ident: str) -> dict | None:
    """The record `fetch` returns, whatever its status; None if there is none."""
    try:
        return _ask(fetch, ident)
    except Rejected as exc:
        if exc.status == 404:
            return None
        raise


def _active(record: dict | None, kind: str, ident: str, field: str, active: str, ended: str) -> dict:
    """`record`, named by request field `field`; invalid, naming it, if missing or ended."""
    if record is None:
        raise InvalidValue(field, f"{kind} {ident} does not exist")
    if record["status"] != active:
        raise InvalidValue(field, f"{kind} {ident} is {ended}")
    return record


def find_organization(proxy, organization_id: str) -> dict | None:
    """The organization, dissolved or not; None if there is no such organization."""
    return _find(proxy.get_organization, organization_id)


def ensure_active_organization(organization: dict | None, organization_id: str, field: str) -> dict:
    """An organization found (find_organization) for request field `field`; invalid, naming it,
    if missing or dissolved. Only for a caller who may be told so (see access.organization_to_manage)."""
    return _active(organization, "organization", organization_id, field, OrganizationStatus.active, "dissolved")


def active_organization(proxy, organization_id: str, field: str) -> dict:
    """The organization named by request field `field`; invalid, naming it, if missing or dissolved."""
    return ensure_active_organization(find_organization(proxy, organization_id), organization_id, field)


def division_of(proxy, organization_id: str) -> str | None:
    """Where an organization is, dissolved or not; None if there is no such organization."""
    organization = find_organization(proxy, organization_id)
    return organization["division"] if organization is not None else None


def online_branch(proxy, organization_id: str) -> dict:
    organization = active_organization(proxy, organization_id, "online_branch_id")
    if not organization.get("online"):
        raise InvalidValue("online_branch_id", f"organization {organization_id} is not an online branch (云端支部)")
    return organization


def active_unit(proxy, unit_id: str, field: str) -> dict:
    """The unit named by request field `field`; invalid, naming it, if missing or deregistered. Any
    active unit will do, wherever it is (see the README: where a member may work)."""
    return _active(_find(proxy.get_unit, unit_id), "unit", unit_id, field, UnitStatus.active, "deregistered")
