"""The kit's entrypoint conventions: a refusal is an expected outcome of an RPC."""

import logging

from nameko.rpc import Rpc

from platform_contracts.problems import Rejected
from service_kit.chassis.entrypoints import rpc
from service_kit.chassis.runner import ExpectedErrorsWithoutTraceback


class Service:
    name = "example"

    @rpc
    def method(self):
        raise Rejected.conflict("no")


def test_rpc_entrypoints_expect_rejected():
    (entrypoint,) = Service.method.nameko_entrypoints
    assert isinstance(entrypoint, Rpc)
    assert entrypoint.expected_exceptions == (Rejected,)


def _record(msg: str) -> logging.LogRecord:
    try:
        raise Rejected.conflict("no")
    except Rejected:
        import sys
        return logging.LogRecord("nameko.containers", logging.WARNING, __file__, 1, msg, (), sys.exc_info())


def test_expected_errors_are_logged_without_traceback():
    record = _record("(expected) error handling worker %s: %s")
    assert ExpectedErrorsWithoutTraceback().filter(record)
    assert record.exc_info is None


def test_unexpected_errors_keep_their_traceback():
    record = _record("error handling worker %s: %s")
    assert ExpectedErrorsWithoutTraceback().filter(record)
    assert record.exc_info is not None
