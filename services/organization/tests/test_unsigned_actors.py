"""Issue 12, finding 10, on the broker: anyone who can publish an RPC could once name any actor
(`{"role": "admin"}`) and be obeyed. The running service now refuses an actor its caller did
not sign, one altered on the way, and one signed by a service it does not take callers from,
writes nothing, and counts each refusal by reason on /metrics."""

import base64
import json

import pytest

from platform_contracts.problems import Rejected
from platform_testing import credit_code, metric_value
from platform_testing.actors import vouched

ADMIN = {"username": "mallory", "role": "admin", "scope": None}


def refusals(service, reason: str) -> float:
    return metric_value(service.metrics(), "rpc_actors_refused_total", service="organization", reason=reason)


def unit_command() -> dict:
    return {"credit_code": credit_code(), "name": "未签名快递站", "type": "enterprise", "industry": "express",
            "division": "370113001", "employees": 8}


def test_an_unsigned_admin_is_refused_writes_nothing_and_is_counted(organization_service, cluster_rpc, database):
    before = refusals(organization_service, "unsigned")
    command = unit_command()
    with pytest.raises(Rejected) as refused:
        cluster_rpc.unsigned.organization.register_unit(command=command, actor=ADMIN, command_id="unsigned-1")
    assert refused.value.status == 403
    assert database.units.count_documents({"credit_code": command["credit_code"]}) == 0
    assert refusals(organization_service, "unsigned") == before + 1


def test_an_actor_raised_to_admin_on_the_way_is_refused(organization_service, cluster_rpc):
    operator = {"username": "op", "role": "operator", "scope": "370113"}
    header, claims, signature = vouched(operator, "list_units").split(".")
    raised = {**json.loads(base64.urlsafe_b64decode(claims + "==")), "role": "admin", "scope": None}
    forged = base64.urlsafe_b64encode(json.dumps(raised).encode()).decode().rstrip("=")
    before = refusals(organization_service, "bad_signature")
    with pytest.raises(Rejected) as refused:
        cluster_rpc.unsigned.organization.list_units(filters={}, actor=f"{header}.{forged}.{signature}")
    assert refused.value.status == 403
    assert refusals(organization_service, "bad_signature") == before + 1


def test_a_service_the_organization_service_does_not_take_callers_from_is_refused(organization_service, cluster_rpc):
    # Its own key: no service calls itself, so the registry does not list it among its callers.
    token = vouched(ADMIN, "list_units", issuer="organization")
    with pytest.raises(Rejected) as refused:
        cluster_rpc.unsigned.organization.list_units(filters={}, actor=token)
    assert refused.value.status == 403


def test_the_member_services_signed_actor_is_taken(organization_service, cluster_rpc):
    token = vouched({"username": "member-service", "role": "admin", "scope": None}, "list_units", issuer="member")
    assert "items" in cluster_rpc.unsigned.organization.list_units(filters={}, actor=token)
