"""Fixtures of the appeal service's integration tests: the real organization service (divisions
and units are checked over RPC) and the appeal service, both started from the registry as
production starts them, on a vhost and databases of this folder's own. SecantusDB, the RPC
proxy and event taps come from the test kit's plugin (platform_testing)."""

import pymongo
import pytest

from platform_testing import EventTap
from platform_testing.plugin import own_vhost_and_services

amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()


@pytest.fixture(scope="session")
def appeal_events(amqp_uri):
    """Every event the appeal service publishes in the session (declared before it starts)."""
    with EventTap(amqp_uri, "appeal.events") as tap:
        yield tap


@pytest.fixture(scope="session")
def services(start_session_service, appeal_events):
    organization = start_session_service("organization", {"RECONCILE_INTERVAL_SECONDS": "86400"}, wait=False)
    appeal = start_session_service("appeal", {"LOG_LEVEL": "DEBUG", "APPEAL_OVERDUE_CHECK_SECONDS": "1",
                                              "APPEAL_FEEDBACK_CHECK_SECONDS": "1", "APPEAL_GAUGE_REFRESH_SECONDS": "1"}, wait=False)
    for service in (organization, appeal):
        service.wait_ready()
    return {"organization": organization, "appeal": appeal}


@pytest.fixture(scope="session")
def appeal_service(services):
    return services["appeal"]


@pytest.fixture(scope="session")
def rpc(services, cluster_rpc):
    return cluster_rpc["appeal"]


@pytest.fixture(scope="session")
def organization_rpc(services, cluster_rpc):
    return cluster_rpc["organization"]


@pytest.fixture(scope="session")
def database(mongodb_uri, appeal_service):
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    yield client[appeal_service.database]
    client.close()
