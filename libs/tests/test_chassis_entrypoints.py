"""The chassis's decorators as plain functions: what each entrypoint no longer repeats (actor,
contract validation, page limits, the command log, domain errors located in the request)."""

import pytest
from pydantic import BaseModel

from platform_contracts.actors import Actor, Role
from platform_contracts.errors import Conflict, Forbidden, InvalidValue, NotFound
from platform_contracts.problems import Rejected
from platform_testing.actors import verifier, vouched
from service_kit.chassis.entrypoints import command, operation, query

ADMIN = {"username": "root", "role": "admin", "scope": None}


class Rename(BaseModel):
    name: str


class Filter(BaseModel):
    division: str | None = None


class FakeStore:
    """The command log of a store, in memory: a repeated id returns the first result."""

    def __init__(self):
        self.results, self.executed = {}, 0

    def execute_command(self, command_id, work):
        if command_id not in self.results:
            self.executed += 1
            self.results[command_id] = work("uow")
        return self.results[command_id]

    def stored_result(self, command_id):
        return self.results.get(command_id)


class Service:
    name = "organization"
    callers = verifier("organization")

    def __init__(self):
        self.store = FakeStore()
        self.asked = []

    @command(Rename, body="changes", path="unit_id")
    def rename(self, uow, unit_id, changes, actor):
        if changes.name == "taken":
            raise Conflict("the name is taken", "name")
        if unit_id == "gone":
            raise NotFound("unit", unit_id, "unit_id")
        return {"unit": unit_id, "name": changes.name, "by": actor.username, "uow": uow}

    @command(Rename, ask_first=True)
    def register(self, command, actor):
        self.asked.append(command.name)
        return lambda uow: {"name": command.name}

    @query(Filter, path="unit_id")
    def children(self, unit_id, filters=None, limit=50, actor=None):
        if unit_id == "other":
            actor.ensure_division("370112", "unit_id")
        return {"division": actor.narrow_division(filters.division), "limit": limit}

    @operation(body=None)
    def attach(self, organization_id, unit_id, actor=None):
        raise NotFound("unit", unit_id, "unit_id")


def problem(excinfo) -> dict:
    return excinfo.value.problem


def test_a_command_runs_once_per_command_id_with_the_parsed_body_and_actor():
    service = Service()
    first = service.rename("u1", {"name": "Shunfeng"}, actor=vouched(ADMIN, "rename"), command_id="k1")
    assert first == {"unit": "u1", "name": "Shunfeng", "by": "root", "uow": "uow"}
    assert service.rename("u1", {"name": "other"}, actor=vouched(ADMIN, "rename"), command_id="k1") == first
    assert service.store.executed == 1


def test_a_body_that_breaks_the_contract_is_a_422_naming_the_body_field():
    with pytest.raises(Rejected) as excinfo:
        Service().rename("u1", {"name": 5}, actor=vouched(ADMIN, "rename"), command_id="k")
    assert problem(excinfo)["status"] == 422
    assert problem(excinfo)["errors"][0]["loc"] == ["body", "name"]


def test_domain_errors_are_located_in_the_path_or_the_body():
    with pytest.raises(Rejected) as excinfo:
        Service().rename("u1", {"name": "taken"}, actor=vouched(ADMIN, "rename"), command_id="k")
    assert problem(excinfo)["status"] == 409
    assert problem(excinfo)["errors"] == [{"loc": ["body", "name"], "msg": "the name is taken"}]
    with pytest.raises(Rejected) as excinfo:  # the addressed resource is missing: 404
        Service().rename("gone", {"name": "x"}, actor=vouched(ADMIN, "rename"), command_id="k")
    assert problem(excinfo)["status"] == 404
    with pytest.raises(Rejected) as excinfo:  # a reference from the body is missing: 422
        Service().attach("o1", "gone", actor=vouched(ADMIN, "attach"))
    assert problem(excinfo)["status"] == 422
    assert problem(excinfo)["errors"][0]["loc"] == ["body", "unit_id"]


def test_no_actor_or_an_unsigned_one_is_forbidden():
    for actor in (None, {"username": "x"}, {"username": "x", "role": "king"}):
        with pytest.raises(Rejected) as excinfo:
            Service().rename("u1", {"name": "a"}, actor=actor, command_id="k")
        assert problem(excinfo)["status"] == 403


def test_a_repeated_command_that_asks_first_is_answered_from_the_log_without_asking():
    service = Service()
    assert service.register({"name": "a"}, actor=vouched(ADMIN, "register"), command_id="k") == {"name": "a"}
    assert service.register({"name": "a"}, actor=vouched(ADMIN, "register"), command_id="k") == {"name": "a"}
    assert service.asked == ["a"]


def test_a_query_narrows_to_the_actors_scope_and_checks_the_page_size():
    operator = {"username": "op", "role": "operator", "scope": "370113"}
    assert Service().children("u1", actor=vouched(operator, "children")) == {"division": "370113", "limit": 50}
    assert Service().children("u1", {"division": "370113001"}, 10, actor=vouched(operator, "children"))["division"] == "370113001"
    with pytest.raises(Rejected) as excinfo:
        Service().children("u1", {"division": "370112"}, actor=vouched(operator, "children"))
    assert problem(excinfo)["status"] == 403 and problem(excinfo)["errors"][0]["loc"] == ["query", "division"]
    with pytest.raises(Rejected) as excinfo:
        Service().children("other", actor=vouched(operator, "children"))
    assert problem(excinfo)["errors"][0]["loc"] == ["path", "unit_id"]
    with pytest.raises(Rejected) as excinfo:
        Service().children("u1", limit=501, actor=vouched(operator, "children"))
    assert problem(excinfo)["errors"][0]["loc"] == ["query", "limit"]


def test_the_rpc_signature_is_the_methods_without_the_unit_of_work():
    import inspect

    assert list(inspect.signature(Service.rename).parameters) == ["self", "unit_id", "changes", "actor", "command_id"]
    with pytest.raises(TypeError):  # what nameko's check_signature does with a call that does not fit
        inspect.getcallargs(Service.rename, None, "u1", {"name": "a"}, "extra", "more", "too many")


def test_domain_errors_say_what_is_wrong_without_transport_words():
    error = InvalidValue(("units", 3, "division"), "unknown district")
    assert error.field == ("units", 3, "division") and "units.3.division" in error.detail
    assert Forbidden("no").field is None
    assert Actor.parse(ADMIN).role is Role.admin


def test_a_command_id_refusal_names_the_idempotency_key_header():
    from service_kit.chassis.entrypoints import locator

    assert locator(("unit_id",), "body")(("Idempotency-Key",)) == ["header", "Idempotency-Key"]
    assert locator(("unit_id",), "body")(("unit_id",)) == ["path", "unit_id"]
