"""The test kit's plugin (platform_testing) on real infrastructure: a registry service started
as production starts it, answering over RPC with Rejected itself, stopped after the test."""

import pytest

from platform_contracts.problems import Rejected

WORKER = {"username": "w", "role": "worker", "scope": "m1"}


@pytest.fixture(scope="module")
def stopped_after_the_test():
    return []


def test_a_registry_service_starts_on_its_own_database_and_answers(start_service, cluster_rpc, event_tap,
                                                                   stopped_after_the_test):
    station = start_service("service-station")
    stopped_after_the_test.append(station)
    assert station.ready() and "service_entrypoint" in station.metrics()
    assert station.database == start_service.database("service-station")
    assert station.argv[1:] == ["-m", "service_kit.chassis.run", "service-station"]
    assert event_tap("service-station.events").drain() == []
    with pytest.raises(Rejected) as refused:  # not a RemoteError: the plugin registered Rejected
        cluster_rpc["service-station"].list_dead_letters(actor=WORKER)
    assert refused.value.status == 403


def test_the_process_is_gone_once_its_test_ended(stopped_after_the_test):
    assert stopped_after_the_test and stopped_after_the_test[0].process.poll() is not None
