"""Entrypoint decorators with the kit's conventions."""

import logging

from nameko.rpc import Rpc

from platform_contracts.problems import Rejected

# A Rejected is the caller's mistake, answered with a 4xx: nameko logs it as expected (a
# warning), not as a failure of the service. `Rpc.decorator(...)` with the keyword, not
# partial(Rpc.decorator, ...): used bare, nameko's decorator drops keyword arguments.
rpc = Rpc.decorator(expected_exceptions=(Rejected,))


class ExpectedErrorsWithoutTraceback(logging.Filter):
    """nameko logs an expected exception with its traceback; for a refusal that is noise (the
    problem document went back to the caller): keep the one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("(expected)"):
            record.exc_info = None
            record.exc_text = None
        return True
