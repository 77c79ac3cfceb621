"""Fixtures of the service-station service's integration tests: the real organization service
(divisions are checked over RPC) and the service-station service, both started from the
registry as production starts them, on a vhost and databases of this folder's own.
SecantusDB, the RPC proxy and event taps come from the test kit's plugin (platform_testing)."""

import pymongo
import pytest

from platform_testing import EventTap
from platform_testing.plugin import own_vhost_and_services

amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()


@pytest.fixture(scope="session")
def station_events(amqp_uri):
    """Every event the service-station service publishes in the session (declared before it starts)."""
    with EventTap(amqp_uri, "service-station.events") as tap:
        yield tap


@pytest.fixture(scope="session")
def services(start_session_service, station_events):
    organization = start_session_service("organization", {"RECONCILE_INTERVAL_SECONDS": "86400"}, wait=False)
    station = start_session_service("service-station", {"LOG_LEVEL": "DEBUG", "ACTIVITY_REMINDER_CHECK_SECONDS": "1"},
                                    wait=False)
    for service in (organization, station):
        service.wait_ready()
    return {"organization": organization, "service-station": station}


@pytest.fixture(scope="session")
def station(services):
    return services["service-station"]


@pytest.fixture(scope="session")
def rpc(services, cluster_rpc):
    return cluster_rpc["service-station"]


@pytest.fixture(scope="session")
def database(mongodb_uri, station):
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    yield client[station.database]
    client.close()
