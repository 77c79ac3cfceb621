"""The platform's test kit (the `partybuilding-testing` distribution, never in a production
image), a pytest plugin (see plugin.py for its fixtures) and these helpers:

- waiting: free_port, wait_for, wait_for_async
- infrastructure: mongodb_server, start_secantus, mongo_ready, rabbit_vhost, broker_connections,
  close_broker_connections, queue_consumers, queue_depth
- processes: ServiceProcess, ServiceStarter, metric_value
- events: EventTap, rpc_cluster, register_rejected
- factories: credit_code, new_id_number, new_phone
- fake_uow: FakeUnitOfWork, fake_database (imported on first use: it loads mongomock and
  the service kit's store)
"""

from .events import EventTap, register_rejected, rpc_cluster
from .factories import credit_code, new_id_number, new_phone
from .infrastructure import (
    DEFAULT_AMQP_URI, broker_connections, close_broker_connections, mongo_ready, mongodb_server, queue_consumers,
    queue_depth, rabbit_vhost, start_secantus,
)
from .processes import QUICK_ENV, ServiceProcess, ServiceStarter, metric_value
from .waiting import free_port, wait_for, wait_for_async

_LAZY = {"FakeUnitOfWork", "fake_database"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import fake_uow

        return getattr(fake_uow, name)
    raise AttributeError(f"module 'platform_testing' has no attribute {name!r}")


__all__ = [
    "DEFAULT_AMQP_URI", "EventTap", "FakeUnitOfWork", "QUICK_ENV", "ServiceProcess", "ServiceStarter",
    "broker_connections", "close_broker_connections", "credit_code", "fake_database", "free_port", "metric_value",
    "mongo_ready", "mongodb_server", "new_id_number", "new_phone", "queue_consumers", "queue_depth", "rabbit_vhost",
    "register_rejected", "rpc_cluster", "start_secantus", "wait_for", "wait_for_async",
]
