"""`ChassisService`: what every nameko service of the platform is, before its first rule.

A service subclasses it, names itself (as in services/registry.toml) and declares its
entrypoints; it gets the store (transactions with outbox, inbox and command log, and the
outbox relay), the check of every caller's signed actor (`callers`, service_kit.actor_tokens), RED metrics and a trace span for every entrypoint, its configuration, /metrics, /healthz and
/readyz outside the worker pool, and the admin's dead-letter list and replay. A service whose
records hold personal data adds `cipher = FieldCipherProvider()`; one whose writes all move the
same few documents sets `store = StoreProvider(serialize_writes=True)`; one with data to
prepare sets `migrate` to a function of (database, config), which the runner calls at start-up
and in `migrate` mode (after the kit's own indexes and the broker topology)."""

from collections.abc import Callable

from nameko.dependency_providers import Config

from platform_contracts.actors import Actor
from platform_contracts.errors import InvalidValue

from .. import topology
from .entrypoints import operation, query
from .metrics import EntrypointMetrics
from .operations import OperationsServer
from .providers import ActorSigning, ActorVerification, FieldCipherProvider, StoreProvider
from .tracing import Tracing

# What a service's class declares besides its entrypoints comes from here.
__all__ = ["ActorSigning", "ChassisService", "FieldCipherProvider", "StoreProvider"]


class ChassisService:
    name: str
    migrate: Callable[[object, dict], None] | None = None

    store = StoreProvider()
    callers = ActorVerification()
    metrics = EntrypointMetrics()
    config = Config()
    operations_http = OperationsServer()
    tracing = Tracing()

    @query(body=None)
    def list_dead_letters(self, limit=100, actor=None):
        actor.require_admin()
        return {"items": topology.list_dead_letters(self.config["AMQP_URI"], self.name, limit)}

    @operation(body=None)
    def replay_dead_letters(self, message_ids=None, actor: Actor = None):
        actor.require_admin()
        if message_ids is not None and not (
            isinstance(message_ids, list) and all(isinstance(m, str) for m in message_ids)
        ):
            raise InvalidValue("message_ids", "must be a list of message ids, or null for all")
        return {"replayed": topology.replay_dead_letters(self.config["AMQP_URI"], self.name, message_ids)}
