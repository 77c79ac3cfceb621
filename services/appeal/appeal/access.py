"""Who may do what with appeals, decided on the records themselves with the actor's predicates
(platform_contracts.actors):

- admin: everything;
- operator: the appeals, departments and routing rules of their division (scope: a prefix);
- handler: the appeals routed to their departments (scope: department ids): accept, assign
  within the department, resolve, reject, close, merge, notes;
- a department's supervisor (the account its record names): what its handlers may, and passing
  an appeal to another department, and reopening one;
- the person who raised an appeal (the account, whatever its role): reads it (without internal
  notes), rates it and reopens it; whoever raised a duplicate merged into it reads its public view;
- anyone signed in, and Open311 clients: submit appeals and see nearby ones in their public view.

Staff see the contact details masked; nobody sees them in full."""

from platform_contracts.actors import Actor, Role
from platform_contracts.errors import Forbidden, InvalidValue

STAFF, RAISER, PUBLIC = "staff", "raiser", "public"


def _ensure(allowed: bool, detail: str, field=None) -> None:
    if not allowed:
        raise Forbidden(detail, field, "outside your scope" if field else None)


def supervises(actor: Actor, department: dict | None) -> bool:
    return department is not None and department.get("supervisor") == actor.username


def serves(department: dict, division: str) -> bool:
    """A department acts in its own division and below it (a district bureau for its streets)."""
    return division.startswith(department["division"])


def ensure_serves(department: dict, division: str, field: str = "department_id") -> None:
    if not serves(department, division):
        raise InvalidValue(field, f"department {department['_id']} works in division {department['division']}, "
                                  f"not in {division}")


def is_staff(actor: Actor, appeal: dict, department: dict | None) -> bool:
    """Handles the appeal: admin, an operator over its division, a handler of its department,
    its department's supervisor."""
    return (actor.covers_division(appeal["division"])
            or (appeal.get("department") is not None and actor.handles_department(appeal["department"]))
            or supervises(actor, department))


def raised_it(actor: Actor, appeal: dict) -> bool:
    return actor.role != Role.open311_client and actor.username == appeal.get("raised_by")


def raised_a_duplicate(actor: Actor, appeal: dict) -> bool:
    """Raised an appeal merged into this one: told of it, shown its public view only (not the
    account or contact details of whoever raised it)."""
    return actor.role != Role.open311_client and actor.username in appeal.get("also_raised_by", ())


def view(actor: Actor, appeal: dict, department: dict | None) -> str | None:
    """How the actor sees the appeal: as staff, as the person who raised it, in its public view
    (having raised a duplicate of it), or not at all."""
    if is_staff(actor, appeal, department):
        return STAFF
    if raised_it(actor, appeal):
        return RAISER
    if raised_a_duplicate(actor, appeal):
        return PUBLIC
    return None


def ensure_readable(actor: Actor, appeal: dict, department: dict | None) -> str:
    what = view(actor, appeal, department)
    _ensure(what is not None, f"appeal {appeal['_id']} is not yours to see")
    return what


def ensure_staff(actor: Actor, appeal: dict, department: dict | None) -> None:
    _ensure(is_staff(actor, appeal, department), f"appeal {appeal['_id']} is outside your scope")


def ensure_may_reroute(actor: Actor, appeal: dict, department: dict | None, field: str = "department_id") -> None:
    """Another department: its division's operators, admins, the current department's supervisor."""
    _ensure(actor.covers_division(appeal["division"]) or supervises(actor, department),
            "only an operator over the appeal's division, an admin, or its department's supervisor may pass it to "
            "another department", field)


def ensure_may_rate(actor: Actor, appeal: dict) -> None:
    _ensure(actor.role != Role.open311_client and actor.username == appeal.get("raised_by"),
            f"only the person who raised appeal {appeal['_id']} rates it")


def ensure_may_reopen(actor: Actor, appeal: dict, department: dict | None) -> None:
    _ensure(raised_it(actor, appeal) or actor.covers_division(appeal["division"]) or supervises(actor, department),
            f"only the person who raised appeal {appeal['_id']}, or a supervisor, reopens it")


def ensure_may_submit(actor: Actor) -> None:
    """Every role may raise an appeal (a worker for themselves, an operator taking a call)."""
    _ensure(actor.role in tuple(Role), "unknown role")


def ensure_may_manage_department(actor: Actor, division: str, field: str = "division") -> None:
    actor.require(Role.admin, Role.operator, detail="only an operator or an admin keeps departments and routing")
    actor.ensure_division(division, field)


def ensure_may_route(actor: Actor, division: str | None) -> None:
    actor.require(Role.admin, Role.operator, detail="only an operator or an admin keeps the routing table")
    if division is None:
        _ensure(actor.is_admin, "only an admin sets a routing rule for everywhere (no division)", "division")
    else:
        actor.ensure_division(division, "division")


def list_scope(actor: Actor) -> dict:
    """What a list may show the actor, as filters: an operator's division, a handler's
    departments, or (anyone else) what they raised."""
    if actor.is_admin:
        return {}
    if actor.role == Role.operator:
        return {"division": actor.division_scope()}
    if actor.role == Role.handler:
        return {"departments": list(actor.scope or ())}
    _ensure(actor.role != Role.open311_client, "an Open311 client reads the public view (GET /open311/v2/requests)")
    return {"raised_by": actor.username}
