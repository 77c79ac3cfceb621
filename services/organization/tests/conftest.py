"""Fixtures of the organization service's integration tests: its environment, the service
itself (started from the registry, as production starts it) and a publisher of the member
service's events. SecantusDB, the vhost, the RPC proxy and event taps come from the test
kit's plugin (platform_testing)."""

import json
import uuid

import pytest
from kombu import Connection, Exchange, Producer

from platform_testing.plugin import own_vhost_and_services

# Services of this folder's own, on a vhost and databases no other test folder's services share.
amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()


@pytest.fixture(scope="session")
def database_name(start_session_service):
    return start_session_service.database("organization")


@pytest.fixture(scope="session")
def service_env(mongodb_uri, amqp_uri, database_name, field_encryption_key):
    """The organization service's environment in these tests (HTTP_PORT aside); a second
    replica started with it shares the first's database."""
    return {
        "MONGODB_URI": mongodb_uri, "MONGODB_ORGANIZATION_DB": database_name, "AMQP_URI": amqp_uri,
        "HTTP_HOST": "127.0.0.1", "JOINT_ORGANIZATION_MAX_UNITS": "3", "FIELD_ENCRYPTION_KEY": field_encryption_key,
        "EVENT_RETRY_DELAYS_SECONDS": "1", "EVENT_MAX_ATTEMPTS": "2", "RECONCILE_INTERVAL_SECONDS": "86400",
        "OUTBOX_POLL_SECONDS": "0.5",
        "COVERAGE_GAUGE_REFRESH_SECONDS": "1",  # replicas show another's reconciliation within a second
    }


@pytest.fixture(scope="session")
def organization_service(start_session_service, service_env):
    return start_session_service("organization", service_env)


@pytest.fixture(scope="session")
def rpc(organization_service, cluster_rpc):
    return cluster_rpc.organization


@pytest.fixture(scope="session")
def database(mongodb_uri, database_name):
    import pymongo

    client = pymongo.MongoClient(mongodb_uri)
    yield client[database_name]
    client.close()


@pytest.fixture
def tap(organization_service, event_tap):
    return event_tap("organization.events")


@pytest.fixture(scope="session")
def member_events(amqp_uri):
    """Publishes events as the member service does, without it."""
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
