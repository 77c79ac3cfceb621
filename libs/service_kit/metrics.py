"""Prometheus metrics shared by every service (names per Prometheus conventions, no ids in
labels), and the nameko dependency that records RED figures for every entrypoint. The outbox's
are in outbox.py, which the gateway shares without nameko."""

import time

from nameko.extensions import DependencyProvider
from nameko.events import EventHandler
from nameko.rpc import Rpc
from nameko.timer import Timer
from prometheus_client import Counter, Histogram

from platform_contracts.problems import Rejected

ENTRYPOINT_REQUESTS = Counter(
    "service_entrypoint_requests", "Entrypoint executions by outcome (success, rejected, error)",
    ["service", "entrypoint", "kind", "outcome"],
)
ENTRYPOINT_DURATION = Histogram(
    "service_entrypoint_duration_seconds", "Entrypoint execution time",
    ["service", "entrypoint", "kind"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INBOX_DUPLICATES = Counter(
    "inbox_duplicates", "Redelivered events recognised by the inbox and skipped", ["service", "handler"]
)
HANDLER_RETRIES = Counter(
    "event_handler_retries", "Failed event deliveries scheduled for another attempt", ["service", "handler"]
)
DEAD_LETTERS = Counter("dead_letters", "Events moved to the dead-letter queue", ["service", "handler"])
COMMANDS_PER_TRANSACTION = Histogram(
    "store_commands_per_transaction", "Commands and events committed in one transaction (group commit)", ["service"],
    buckets=(1, 2, 3, 5, 10, 20, 50),
)


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
