"""Unit tests of the scope rules services apply to the actor the gateway passes."""

import pytest

from platform_contracts.problems import Rejected
from service_kit.auth import ensure_in_scope, narrow_division_filter, require_admin

ADMIN = {"username": "a", "role": "admin", "scope": None}
OPERATOR = {"username": "o", "role": "operator", "scope": "370113"}


def test_admin_sees_everywhere():
    ensure_in_scope(ADMIN, "652701")
    assert narrow_division_filter(ADMIN, None) is None
    assert narrow_division_filter(ADMIN, "37") == "37"


def test_operator_is_held_to_their_prefix():
    ensure_in_scope(OPERATOR, "370113001")
    with pytest.raises(Rejected) as caught:
        ensure_in_scope(OPERATOR, "370112001")
    assert caught.value.status == 403
    assert narrow_division_filter(OPERATOR, None) == "370113"
    assert narrow_division_filter(OPERATOR, "370113002") == "370113002"
    with pytest.raises(Rejected):
        narrow_division_filter(OPERATOR, "3701")  # wider than the scope


@pytest.mark.parametrize("actor", [None, {"role": "worker", "scope": "m1"}, {"role": "operator", "scope": ""}])
def test_others_are_refused(actor):
    with pytest.raises(Rejected) as caught:
        ensure_in_scope(actor, "370113")
    assert caught.value.status == 403


def test_admin_only_operations():
    require_admin(ADMIN)
    with pytest.raises(Rejected):
        require_admin(OPERATOR)
