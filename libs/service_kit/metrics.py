"""Prometheus metrics shared by every service (names per Prometheus conventions, no ids in
labels). The nameko dependency that records them for every entrypoint is in
chassis/metrics.py; the outbox's are in outbox.py."""

from prometheus_client import Counter, Histogram

ENTRYPOINT_REQUESTS = Counter(
    "service_entrypoint_requests", "Entrypoint executions by outcome (success, rejected, error)",
    ["service", "entrypoint", "kind", "outcome"],
)
ENTRYPOINT_DURATION = Histogram(
    "service_entrypoint_duration_seconds", "Entrypoint execution time",
    ["service", "entrypoint", "kind"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACTORS_REFUSED = Counter(
    "rpc_actors_refused", "RPCs refused before they ran: the actor was unsigned, forged, expired or meant "
    "for another service or method (service_kit.actor_tokens)", ["service", "reason"],
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
