"""A service whose database is unreachable answers a 503 to try again (the gateway passes it on
with Retry-After), not a failure the gateway reports as a 502."""

import pytest
from pymongo.errors import NetworkTimeout, OperationFailure, ServerSelectionTimeoutError

from platform_contracts.problems import Rejected
from platform_testing.actors import verifier, vouched
from service_kit.chassis.entrypoints import command, query

ADMIN = {"username": "root", "role": "admin", "scope": None}


class UnreachableStore:
    def execute_command(self, command_id, work):
        raise ServerSelectionTimeoutError("db:27017: [Errno 111] Connection refused")


class Service:
    name = "organization"
    callers = verifier("organization")
    store = UnreachableStore()

    @command(body=None)
    def close_unit(self, uow, unit_id, actor):
        raise AssertionError("not reached: the store is unreachable")

    @query(body=None)
    def unit(self, unit_id, actor=None):
        raise NetworkTimeout("db:27017: timed out")

    @query(body=None)
    def broken(self, actor=None):
        raise OperationFailure("unknown operator: $bad", code=2)


def test_a_database_that_does_not_answer_is_a_503_without_its_address():
    for call in (lambda: Service().close_unit("u1", actor=vouched(ADMIN, "close_unit"), command_id="k1"),
                 lambda: Service().unit("u1", actor=vouched(ADMIN, "unit"))):
        with pytest.raises(Rejected) as rejected:
            call()
        assert rejected.value.status == 503
        assert "organization" in rejected.value.problem["detail"] and "db:27017" not in str(rejected.value.problem)


def test_other_database_errors_stay_faults():
    with pytest.raises(OperationFailure):
        Service().broken(actor=vouched(ADMIN, "broken"))
