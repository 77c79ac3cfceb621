"""The nameko dependencies a chassis service declares: its store (with the outbox relay beside
it), the check of its callers' signed actors, and, where it holds personal data, its field
cipher; a service that calls another signs the actors it passes with `ActorSigning`."""

from functools import partial

from nameko.extensions import DependencyProvider

from .. import registry, topology
from ..actor_tokens import ActorSigner, ActorVerifier
from ..outbox import OutboxRelay
from ..pii import cipher_from_config
from ..store import Store
from ..transaction_owners import heartbeat_seconds_from


class StoreProvider(DependencyProvider):
    """Gives workers the service's `Store`; starts the outbox relay beside it."""

    def __init__(self, serialize_writes: bool = False):
        self.serialize_writes = serialize_writes

    def setup(self):
        config = self.container.config
        service, amqp_uri = self.container.service_name, config["AMQP_URI"]

        self.relay = OutboxRelay(service, amqp_uri, float(config.get("OUTBOX_POLL_SECONDS", 1.0)),
                                 refresh_other_gauges=lambda: topology.count_dead_letters(amqp_uri, service))
        self.store = Store(
            config["MONGODB_URI"], config["MONGODB_DATABASE"], service,
            after_commit=self.relay.committed, serialize_writes=self.serialize_writes,
            server_selection_timeout_ms=int(config.get("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 2000)),
            transaction_heartbeat_seconds=heartbeat_seconds_from(config),
        )
        self.relay.outbox = self.store.db.outbox
        self.relay.other_relays_alive = self.store.owners.others_alive

    def start(self):
        self.store.ensure_indexes(float(self.container.config.get("COMMAND_LOG_RETENTION_HOURS", 168)))
        self.relay.start(partial(self.container.spawn_managed_thread, identifier="outbox_relay"))
        self.store.owners.start(partial(self.container.spawn_managed_thread, identifier="transaction_owners"))

    def stop(self):
        # The container's workers have finished: nothing commits any more.
        self.relay.stop()
        self.store.owners.stop()
        # Closing the client also ends its monitors, which at the interpreter's exit pymongo
        # would otherwise wait for, a second each, while they sit in a socket read.
        self.store.close()

    def kill(self):
        self.relay.stop()
        self.store.owners.stop(timeout=0, leave=False)
        self.store.close()

    def get_dependency(self, worker_ctx):
        return self.store


class FieldCipherProvider(DependencyProvider):
    """Gives workers the service's FieldCipher, keyed from config[FIELD_ENCRYPTION_KEY] (and
    FIELD_ENCRYPTION_PREVIOUS_KEYS during a rotation)."""

    def setup(self):
        self.cipher = cipher_from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.cipher


class ActorVerification(DependencyProvider):
    """Gives the entrypoints the service's ActorVerifier: it takes actors signed by the gateway
    and by the services the registry says call it, from config[ACTOR_PUBLIC_KEYS]. No keys,
    no start: a service that took unsigned actors would take anyone's word."""

    def setup(self):
        name = self.container.service_name
        self.verifier = ActorVerifier.from_config(name, registry.callers_of(name), self.container.config)

    def get_dependency(self, worker_ctx):
        return self.verifier


class ActorSigning(DependencyProvider):
    """Gives workers the service's ActorSigner (config[ACTOR_SIGNING_KEY]), for the actors it
    passes when it calls another service."""

    def setup(self):
        self.signer = ActorSigner.from_config(self.container.service_name, self.container.config)

    def get_dependency(self, worker_ctx):
        return self.signer
