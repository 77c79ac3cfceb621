"""Fault test (issue 16, items 2 and 3): the broker closes the gateway's RPC connection twice
mid-load (as an operator or a broker restart would), each time with calls in flight (the
organization service is paused for a moment first, so that they are). The gateway notices at
once, reconnects and sends the calls in flight again under their command ids; clients see no
500 and no stall turned 504, and every write they were told succeeded is there exactly once."""

import os
import signal
import threading
import urllib.request

import pytest

from platform_testing import close_broker_connections, metric_value, wait_for
from tests.harness import ClientRecord, register_units_until_answered

pytestmark = pytest.mark.slow

CLIENTS, UNITS_EACH = 4, 15
DIVISION = "370114302"


def gateway_metric(platform, name: str) -> float:
    with urllib.request.urlopen(f"{platform.gateway_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(metric_value(text, name, service="organization", method=m) for m in ("register_unit",))


def test_dropped_broker_connections_cost_clients_nothing(platform):
    record = ClientRecord()
    results, statuses, failures, durations = record.results, record.statuses, record.failures, record.durations
    resent_before = gateway_metric(platform, "gateway_rpc_resent_total")
    clients = [threading.Thread(target=register_units_until_answered, args=(platform, DIVISION, UNITS_EACH, record),
                                kwargs={"name": f"断连单位{i}-"}) for i in range(CLIENTS)]
    for client in clients:
        client.start()
    for drop in (1, 2):
        wait_for(lambda: len(results) >= drop * CLIENTS * UNITS_EACH // 3, timeout=60, interval=0.02,
                 what="writes under way")
        service = platform.pid("organization")
        os.kill(service, signal.SIGSTOP)  # calls wait for it: in flight when the connection drops
        try:
            # Every client waits for an answer the stopped service cannot give (quickly: their
            # calls time out after RPC_TIMEOUT_SECONDS).
            wait_for(lambda: len(record.outstanding) == CLIENTS, timeout=30, interval=0.01,
                     what="every client waiting")
            assert close_broker_connections(platform.amqp_uri, "gateway rpc"), "no gateway RPC connection to drop"
        finally:
            os.kill(service, signal.SIGCONT)
    for client in clients:
        client.join(180)
    assert not failures, failures
    assert len(results) == CLIENTS * UNITS_EACH
    resent = gateway_metric(platform, "gateway_rpc_resent_total") - resent_before
    print(f"\nstatuses: {dict(statuses)}; calls sent again after a drop: {resent:.0f}; "
          f"slowest request {max(durations):.2f} s")
    assert resent >= 1, "no call was in flight when the connections dropped"
    assert set(statuses) <= {200, 201, 503}, statuses  # no 500, no 504
    with platform.client() as api:
        stored = api.get("/units", params={"division": DIVISION, "limit": 500}).json()["items"]
    assert sorted(u["id"] for u in stored) == sorted(results.values())
