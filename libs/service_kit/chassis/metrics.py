"""The nameko dependency that records RED figures (requests by outcome, duration) for every
entrypoint of the service it is declared on."""

import time

from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer

from platform_contracts.problems import Rejected

from ..metrics import ENTRYPOINT_DURATION, ENTRYPOINT_REQUESTS


def _kind(entrypoint) -> str:
    if isinstance(entrypoint, Rpc):
        return "rpc"
    if isinstance(entrypoint, EventHandler):
        return "event"
    if isinstance(entrypoint, Timer):
        return "timer"
    return type(entrypoint).__name__.lower()


def outcome_of(exc_info) -> str:
    if exc_info is None:
        return "success"
    return "rejected" if isinstance(exc_info[1], Rejected) else "error"


class EntrypointMetrics(DependencyProvider):
    """Counts and times every worker of the service it is declared on."""

    def setup(self):
        self._started = {}

    def worker_setup(self, worker_ctx):
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint
        labels = (self.container.service_name, entrypoint.method_name, _kind(entrypoint))
        ENTRYPOINT_REQUESTS.labels(*labels, outcome_of(exc_info)).inc()
        if started is not None:
            ENTRYPOINT_DURATION.labels(*labels).observe(time.perf_counter() - started)

    def worker_teardown(self, worker_ctx):
        self._started.pop(worker_ctx, None)
