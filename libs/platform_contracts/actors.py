"""Who is asking, and what their scope lets them see: the one place for roles and scopes.

The gateway authenticates a user and passes the caller with every RPC as an actor
({username, role, scope}); services decide on the records themselves with the predicates
here, so a route that forgets a check cannot skip it. What each role's `scope` holds
(CONTRACT.md "Auth"):

- admin: nothing (everywhere);
- operator: a division code prefix;
- secretary: organization ids;
- station_manager: station ids;
- worker: their member id;
- handler: department ids (acts on appeals routed to them);
- open311_client: an Open311 application calling with an API key (not a user account; its
  scope is the key's id): files appeals and reads their public view.

Refusals are domain errors (`Forbidden`, naming the request field that led there when one
did); the entrypoints turn them into problem documents."""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .codes import normalize_division_prefix
from .errors import Forbidden


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    secretary = "secretary"
    station_manager = "station_manager"
    worker = "worker"
    handler = "handler"
    open311_client = "open311_client"


# The roles a user account may hold (an Open311 client is an API key, not an account).
ROLES = tuple(r for r in Role if r != Role.open311_client)
# Roles that see division-scoped records (units, organizations, coverage and their events).
DIVISION_ROLES = frozenset({Role.admin, Role.operator})
# Roles whose scope is a list of record ids, and what those ids are of.
LIST_SCOPES = {Role.secretary: "organization", Role.station_manager: "station", Role.handler: "department"}


def normalize_scope(role: str, scope: Any) -> Any:
    """The scope a user of `role` may hold, normalised; ValueError saying what is wrong."""
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}") from None
    if role not in ROLES:
        raise ValueError(f"the {role} role is held by API keys, not by accounts")
    if role == Role.admin:
        if scope not in (None, "", []):
            raise ValueError("an admin has no scope")
        return None
    if role in (Role.operator, Role.worker):
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError("an operator's scope is a division prefix" if role == Role.operator
                             else "a worker's scope is their member id")
        return normalize_division_prefix(scope) if role == Role.operator else scope.strip()
    what = LIST_SCOPES[role]
    if not isinstance(scope, list) or not scope or not all(isinstance(i, str) and i.strip() for i in scope):
        raise ValueError(f"a {role}'s scope is a non-empty list of {what} ids")
    return sorted({i.strip() for i in scope})


@dataclass(frozen=True)
class Actor:
    username: str
    role: Role
    scope: Any = None

    # ---- on the wire ---------------------------------------------------------------------

    @classmethod
    def parse(cls, value: "Actor | dict | None") -> "Actor":
        """The actor an RPC carries; Forbidden when there is none or its role is unknown."""
        if isinstance(value, Actor):
            return value
        if not isinstance(value, dict) or not value.get("role"):
            raise Forbidden("no caller given")
        try:
            role = Role(value["role"])
        except ValueError:
            raise Forbidden(f"unknown role {value['role']!r}") from None
        scope = value.get("scope")
        if isinstance(scope, list):
            scope = tuple(scope)
        return cls(username=str(value.get("username") or f"({role})"), role=role, scope=scope)

    def to_wire(self) -> dict:
        scope = list(self.scope) if isinstance(self.scope, tuple) else self.scope
        return {"username": self.username, "role": self.role.value, "scope": scope}

    # ---- roles ---------------------------------------------------------------------------

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin

    def require(self, *roles: Role, detail: str | None = None) -> None:
        if self.role not in roles:
            raise Forbidden(detail or f"the {self.role} role may not do this")

    def require_admin(self) -> None:
        self.require(Role.admin, detail="only an admin may do this")

    # ---- scopes --------------------------------------------------------------------------

    def _ids(self) -> tuple[str, ...]:
        return tuple(self.scope) if isinstance(self.scope, (list, tuple)) else ()

    def covers_division(self, division: str | None) -> bool:
        """An admin, or an operator whose division prefix holds `division`."""
        if self.is_admin:
            return True
        return (self.role == Role.operator and isinstance(self.scope, str) and bool(self.scope)
                and bool(division) and division.startswith(self.scope))

    def is_secretary_of(self, organization_id: str) -> bool:
        return self.role == Role.secretary and organization_id in self._ids()

    def is_member(self, member_id: str) -> bool:
        return self.role == Role.worker and self.scope == member_id

    def manages_station(self, station_id: str) -> bool:
        return self.role == Role.station_manager and station_id in self._ids()

    def handles_department(self, department_id: str) -> bool:
        return self.role == Role.handler and department_id in self._ids()

    def acts_for(self, organization_id: str, division: str) -> bool:
        """Speaks for this organization: admin, its division's operator, its secretary."""
        return self.covers_division(division) or self.is_secretary_of(organization_id)

    def division_scope(self) -> str | None:
        """The division prefix this actor is limited to; None means everywhere (admin).
        Forbidden for roles that see no division-scoped records."""
        if self.role not in DIVISION_ROLES:
            raise Forbidden("this role has no access to division-scoped records")
        if self.is_admin:
            return None
        if not isinstance(self.scope, str) or not self.scope:
            raise Forbidden("operator account has no division scope")
        return self.scope

    def ensure_division(self, division: str, field: str | Sequence[str | int] | None = None) -> None:
        """Forbidden unless `division` lies in this actor's division scope; `field` names the
        request field that led to the division (the addressed unit's, a division sent)."""
        scope = self.division_scope()
        if scope is not None and not division.startswith(scope):
            raise _outside(division, scope, field)

    def narrow_division(self, requested: str | None, field: str | Sequence[str | int] | None = "division"
                        ) -> str | None:
        """The division filter to apply: the one requested, which must lie inside the scope,
        or the scope itself when none was."""
        scope = self.division_scope()
        if scope is None:
            return requested
        if requested is None:
            return scope
        if not requested.startswith(scope):
            raise _outside(requested, scope, field)
        return requested

    def ensure_organization_readable(self, organization_id: str, division: str,
                                     field: str | Sequence[str | int] | None = None) -> None:
        """An organization is read by its division's admins and operators, and by its secretary."""
        if self.role == Role.secretary:
            if not self.is_secretary_of(organization_id):
                raise Forbidden(f"organization {organization_id} is not one of yours", field,
                                "not one of your organizations")
            return
        self.ensure_division(division, field)


def _outside(division: str, scope: str, field) -> Forbidden:
    detail = f"division {division} is outside your scope {scope}"
    return Forbidden(detail, field, detail)
