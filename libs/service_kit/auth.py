"""Who is asking, as services see it: the gateway authenticates the user and passes an
`actor` ({username, role, scope}) with every RPC; services enforce scope on the entities
themselves, so a check cannot be skipped by a route that forgets it."""

from platform_contracts.problems import Rejected

ADMIN = "admin"
OPERATOR = "operator"
SECRETARY = "secretary"
DIVISION_ROLES = {ADMIN, OPERATOR}


def require_admin(actor: dict | None) -> None:
    if not actor or actor.get("role") != ADMIN:
        raise Rejected.forbidden("only an admin may do this")


def division_scope(actor: dict | None) -> str | None:
    """The division prefix an actor is limited to; None means everywhere (admin)."""
    if not actor or actor.get("role") not in DIVISION_ROLES:
        raise Rejected.forbidden("this role has no access to division-scoped records")
    if actor["role"] == ADMIN:
        return None
    scope = actor.get("scope")
    if not isinstance(scope, str) or not scope:
        raise Rejected.forbidden("operator account has no division scope")
    return scope


def outside_scope(division: str, scope: str, loc) -> Rejected:
    """A 403 naming, when given, the request field that led to the division (e.g. ["path",
    "unit_id"] for a unit's, ["body", "division"] for one the caller sent)."""
    errors = [{"loc": list(loc), "msg": f"division {division} is outside your scope {scope}"}] if loc else None
    return Rejected.make(403, f"division {division} is outside your scope {scope}", errors)


def ensure_in_scope(actor: dict | None, division: str, loc: list | tuple | None = None) -> None:
    scope = division_scope(actor)
    if scope is not None and not division.startswith(scope):
        raise outside_scope(division, scope, loc)


def ensure_organization_readable(actor: dict | None, organization_id: str, division: str,
                                 loc: list | tuple | None = None) -> None:
    """An organization is read by its division's admins and operators, and by its secretary
    (whose scope is a list of organization ids)."""
    if actor and actor.get("role") == SECRETARY:
        if organization_id not in (actor.get("scope") or []):
            raise Rejected.make(403, f"organization {organization_id} is not one of yours",
                                [{"loc": list(loc), "msg": "not one of your organizations"}] if loc else None)
        return
    ensure_in_scope(actor, division, loc)


def narrow_division_filter(actor: dict | None, requested: str | None,
                           loc: list | tuple | None = ("query", "division")) -> str | None:
    """The division filter to apply: the request's, which must lie inside the actor's scope."""
    scope = division_scope(actor)
    if scope is None:
        return requested
    if requested is None:
        return scope
    if not requested.startswith(scope):
        raise outside_scope(requested, scope, loc)
    return requested
