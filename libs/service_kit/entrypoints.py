"""Entrypoint decorators with the kit's conventions."""

from functools import partial

from nameko.rpc import Rpc

from platform_contracts.problems import Rejected

# A Rejected is the caller's mistake, answered with a 4xx: nameko logs it as expected
# (a warning), not as a failure of the service.
rpc = partial(Rpc.decorator, expected_exceptions=(Rejected,))
