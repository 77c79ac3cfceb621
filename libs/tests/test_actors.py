"""Unit tests of the one module of roles and scopes (platform_contracts.actors), which the
gateway and every service apply to the caller."""

import pytest

from platform_contracts.actors import Actor, Role, normalize_scope
from platform_contracts.errors import Forbidden

ADMIN = Actor.parse({"username": "a", "role": "admin", "scope": None})
OPERATOR = Actor.parse({"username": "o", "role": "operator", "scope": "370113"})
SECRETARY = Actor.parse({"username": "s", "role": "secretary", "scope": ["o1", "o2"]})


def test_admin_sees_everywhere():
    ADMIN.ensure_division("652701")
    assert ADMIN.narrow_division(None) is None
    assert ADMIN.narrow_division("37") == "37"


def test_operator_is_held_to_their_prefix():
    OPERATOR.ensure_division("370113001")
    with pytest.raises(Forbidden) as caught:
        OPERATOR.ensure_division("370112001", "unit_id")
    assert caught.value.field == ("unit_id",)
    assert OPERATOR.narrow_division(None) == "370113"
    assert OPERATOR.narrow_division("370113002") == "370113002"
    with pytest.raises(Forbidden):
        OPERATOR.narrow_division("3701")  # wider than the scope


@pytest.mark.parametrize("actor", [{"role": "worker", "scope": "m1"}, {"role": "operator", "scope": ""},
                                   {"role": "handler", "scope": ["d1"]}])
def test_roles_without_a_division_scope_see_no_division_records(actor):
    with pytest.raises(Forbidden):
        Actor.parse(actor).ensure_division("370113")


@pytest.mark.parametrize("wire", [None, {}, {"username": "x"}, {"role": "king"}])
def test_no_caller_or_an_unknown_role_is_forbidden(wire):
    with pytest.raises(Forbidden):
        Actor.parse(wire)


def test_scopes_of_lists_and_the_wire_shape():
    assert SECRETARY.is_secretary_of("o2") and not SECRETARY.is_secretary_of("o3")
    assert SECRETARY.acts_for("o1", "652701") and not OPERATOR.acts_for("o1", "652701")
    assert SECRETARY.to_wire() == {"username": "s", "role": "secretary", "scope": ["o1", "o2"]}
    handler = Actor.parse({"username": "h", "role": "handler", "scope": ["dept-labour"]})
    assert handler.handles_department("dept-labour") and handler.role is Role.handler
    with pytest.raises(Forbidden):
        SECRETARY.ensure_organization_readable("o3", "370113", "organization_id")
    SECRETARY.ensure_organization_readable("o1", "652701")


def test_admin_only_operations():
    ADMIN.require_admin()
    with pytest.raises(Forbidden):
        OPERATOR.require_admin()


@pytest.mark.parametrize("role, scope, expected", [
    ("admin", None, None), ("operator", " 370113 ", "370113"), ("handler", ["d2", "d1", "d2"], ["d1", "d2"]),
])
def test_scopes_are_normalised(role, scope, expected):
    assert normalize_scope(role, scope) == expected


@pytest.mark.parametrize("role, scope", [("admin", "37"), ("operator", "37011"), ("handler", []), ("king", None)])
def test_scopes_that_do_not_fit_the_role_are_refused(role, scope):
    with pytest.raises(ValueError):
        normalize_scope(role, scope)
