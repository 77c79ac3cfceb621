"""Watching events on the broker, and asking services over RPC as a client would."""

import contextlib
import json
import uuid

from .waiting import wait_for


class EventTap:
    """A queue bound to an events exchange that records everything published on it; a context
    manager too (closed on exit)."""

    def __init__(self, amqp_uri: str, exchange: str):
        from kombu import Connection, Exchange, Queue

        self.connection = Connection(amqp_uri)
        self.queue = Queue(f"tap-{uuid.uuid4().hex[:8]}", exchange=Exchange(exchange, "topic", durable=True),
                           routing_key="#", auto_delete=True)
        self.queue(self.connection.default_channel).declare()
        self.seen: list[dict] = []

    def drain(self) -> list[dict]:
        bound = self.queue(self.connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            self.seen.append(json.loads(message.body))
        return self.seen

    def wait_for(self, predicate, timeout: float = 15) -> list[dict]:
        def matched():
            return [e for e in self.drain() if predicate(e)]
        return wait_for(matched, timeout=timeout, what="events on the tap")

    def close(self):
        self.connection.release()

    def __enter__(self) -> "EventTap":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def register_rejected() -> None:
    """Let nameko's RPC proxies raise `platform_contracts.problems.Rejected` itself, problem
    document and all, rather than a RemoteError (as the member service does in production)."""
    from nameko.exceptions import get_module_path, registry

    from platform_contracts.problems import Rejected

    registry[get_module_path(Rejected)] = Rejected


@contextlib.contextmanager
def rpc_cluster(amqp_uri: str, timeout: float = 30):
    """A nameko ClusterRpcProxy on `amqp_uri` (`cluster.<service>.<method>(...)`), raising
    Rejected, that signs the actors it is given as the gateway does (`.unsigned`: the bare proxy)."""
    from nameko.standalone.rpc import ClusterRpcProxy

    from .actors import signing

    register_rejected()
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as cluster:
        signed = signing(cluster)
        signed.unsigned = cluster
        yield signed
