"""Fixtures for the organization service's integration tests: a real SecantusDB, an isolated
RabbitMQ vhost, and the service itself started as `python -m organization`."""

import base64
import json
import os
import uuid

import pytest
from kombu import Connection, Exchange, Producer
from nameko.exceptions import get_module_path, registry
from nameko.standalone.rpc import ClusterRpcProxy

from platform_contracts.problems import Rejected
from service_kit.testing import EventTap, ServiceProcess, free_port, mongodb_server, rabbit_vhost

# Let the RPC proxy raise Rejected itself, problem document and all.
registry[get_module_path(Rejected)] = Rejected

ADMIN = {"username": "admin", "role": "admin", "scope": None}


@pytest.fixture(scope="session")
def mongodb_uri():
    with mongodb_server() as uri:
        yield uri


@pytest.fixture(scope="session")
def amqp_uri():
    with rabbit_vhost() as uri:
        yield uri


@pytest.fixture(scope="session")
def database_name():
    return f"organization_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def field_encryption_key():
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
def service_env(mongodb_uri, amqp_uri, database_name, field_encryption_key):
    """The environment of `python -m organization` in these tests (HTTP_PORT aside)."""
    return {
        "MONGODB_URI": mongodb_uri, "MONGODB_ORGANIZATION_DB": database_name, "AMQP_URI": amqp_uri,
        "HTTP_HOST": "127.0.0.1", "JOINT_ORGANIZATION_MAX_UNITS": "3", "FIELD_ENCRYPTION_KEY": field_encryption_key,
        "EVENT_RETRY_DELAYS_SECONDS": "1", "EVENT_MAX_ATTEMPTS": "2", "RECONCILE_INTERVAL_SECONDS": "86400",
        "OUTBOX_POLL_SECONDS": "0.5",
        "COVERAGE_GAUGE_REFRESH_SECONDS": "1",  # replicas show another's reconciliation within a second
    }


@pytest.fixture(scope="session")
def organization_service(service_env, tmp_path_factory):
    port = free_port()
    service = ServiceProcess("organization", {**service_env, "HTTP_PORT": str(port)}, port,
                             str(tmp_path_factory.mktemp("logs") / "organization.log"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def rpc(organization_service, amqp_uri):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=30) as proxy:
        yield proxy.organization


@pytest.fixture(scope="session")
def database(mongodb_uri, database_name):
    import pymongo

    client = pymongo.MongoClient(mongodb_uri)
    yield client[database_name]
    client.close()


@pytest.fixture
def tap(amqp_uri, organization_service):
    tap = EventTap(amqp_uri, "organization.events")
    yield tap
    tap.close()


@pytest.fixture(scope="session")
def member_events(amqp_uri):
    """Publishes events as the member service will (it does not exist yet)."""
    connection = Connection(amqp_uri)
    exchange = Exchange("member.events", "topic", durable=True)
    producer = Producer(connection.default_channel, exchange=exchange)
    exchange(connection.default_channel).declare()

    def publish(event_type: str, data: dict, event_id: str | None = None) -> str:
        envelope = {"specversion": "1.0", "id": event_id or uuid.uuid4().hex, "source": "member",
                    "type": event_type, "time": "2026-11-22T08:00:00+00:00", "subject": data.get("member_id"),
                    "datacontenttype": "application/json", "data": data}
        producer.publish(json.dumps(envelope), routing_key=event_type, content_type="application/json",
                         message_id=envelope["id"])
        return envelope["id"]

    yield publish
    connection.release()
