"""Issue 12, finding 10: services trust no actor their caller did not sign. The gateway (and a
service calling another) signs each RPC's actor for one service and one method; anything
else — unsigned, altered, expired, for another service or method, or from an issuer the
service does not take callers from — is refused before the entrypoint runs, and counted."""

import base64
import json

import pytest

from platform_contracts.actors import Role
from platform_contracts.problems import Rejected
from platform_testing.actors import signer, verifier, vouched
from service_kit import registry
from service_kit.actor_tokens import ActorRefused, ActorSigner, generate_keyring, private_key
from service_kit.chassis.entrypoints import query
from service_kit.metrics import ACTORS_REFUSED

OPERATOR = {"username": "op", "role": "operator", "scope": "370113"}


class Service:
    name = "organization"
    callers = verifier("organization", trusted=("gateway", "member"))

    @query(body=None)
    def whoami(self, actor=None):
        return actor.to_wire()


def refused(token, method="whoami") -> str:
    with pytest.raises(ActorRefused) as excinfo:
        Service.callers.verify(token, method)
    return excinfo.value.reason


def test_a_signed_actor_is_taken_as_signed():
    assert Service().whoami(actor=vouched(OPERATOR, "whoami")) == OPERATOR
    # A service that calls this one signs with its own key, which the registry says to trust.
    assert Service().whoami(actor=vouched(OPERATOR, "whoami", issuer="member")) == OPERATOR


def test_services_trust_unsigned_actors_no_longer():
    """The finding: a plain {"role": "admin"} on the broker was an admin."""
    before = ACTORS_REFUSED.labels("organization", "unsigned")._value.get()
    with pytest.raises(Rejected) as excinfo:
        Service().whoami(actor={"username": "mallory", "role": "admin", "scope": None})
    assert excinfo.value.status == 403
    assert ACTORS_REFUSED.labels("organization", "unsigned")._value.get() == before + 1


def test_an_altered_actor_is_refused():
    header, claims, signature = vouched(OPERATOR, "whoami").split(".")
    raised = json.loads(base64.urlsafe_b64decode(claims + "=="))
    raised.update(role=Role.admin.value, scope=None)
    forged = base64.urlsafe_b64encode(json.dumps(raised).encode()).decode().rstrip("=")
    assert refused(f"{header}.{forged}.{signature}") == "bad_signature"


def test_an_actor_for_another_service_or_method_is_refused():
    assert refused(vouched(OPERATOR, "whoami", audience="member")) == "wrong_audience"
    assert refused(vouched(OPERATOR, "deregister_unit")) == "wrong_method"


def test_an_expired_actor_is_refused():
    old = signer().sign(OPERATOR, "organization", "whoami", now=0)
    assert refused(old) == "expired"


def test_an_issuer_the_service_does_not_take_callers_from_is_refused():
    # service-station calls nobody: organization does not take its word, though its key is known.
    assert refused(vouched(OPERATOR, "whoami", issuer="service-station")) == "untrusted_issuer"
    # A key nobody published, under a trusted issuer's name.
    stranger, _ = generate_keyring(["gateway"])
    token = ActorSigner("gateway", private_key(stranger["gateway"])).sign(OPERATOR, "organization", "whoami")
    assert refused(token) == "bad_signature"


def test_malformed_tokens_are_refused():
    for token in ("", "not-a-token", "a.b.c", 42, None):
        assert refused(token) in {"unsigned", "malformed"}


def test_the_registry_names_whose_actors_each_service_takes():
    services = registry.load()
    assert registry.callers_of("organization", services) == [
        "gateway", *(name for name, entry in services.items() if "organization" in entry.calls and entry.kind != "gateway")]
    assert "member" in registry.callers_of("organization", services)
    assert registry.callers_of("member", services) == ["gateway"]
    assert registry.callers_of("not-registered", services) == ["gateway"]
