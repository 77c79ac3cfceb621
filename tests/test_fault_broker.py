"""Fault test (issue 16, items 2 and 3): the broker closes the gateway's RPC connection twice
mid-load (as an operator or a broker restart would), each time with calls in flight (the
organization service is paused for a moment first, so that they are). The gateway notices at
once, reconnects and sends the calls in flight again under their command ids; clients see no
500 and no stall turned 504, and every write they were told succeeded is there exactly once."""

import os
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter

import httpx
import pytest

from platform_testing import close_broker_connections, credit_code, metric_value, wait_for

pytestmark = pytest.mark.slow

CLIENTS, UNITS_EACH = 4, 15
DIVISION = "370114302"


def register(platform, client_index: int, results: dict, statuses: Counter, failures: list, slowest: list):
    with platform.client() as api:
        for index in range(UNITS_EACH):
            body = {"credit_code": credit_code(DIVISION), "name": f"断连单位{client_index}-{index}",
                    "type": "enterprise", "industry": "logistics", "division": f"{DIVISION}{index % 3 + 1:03d}"}
            key = uuid.uuid4().hex
            for _ in range(120):
                started = time.monotonic()
                try:
                    response = api.post("/units", json=body, headers={"Idempotency-Key": key})
                    statuses[response.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    response = None
                slowest.append(time.monotonic() - started)
                if response is not None and response.status_code in (200, 201):
                    results[key] = response.json()["id"]
                    break
                if response is not None and response.status_code < 500:
                    failures.append(response.text)
                    break
                time.sleep(0.25)
            else:
                failures.append(f"command {key} never answered")


def gateway_metric(platform, name: str) -> float:
    with urllib.request.urlopen(f"{platform.gateway_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(metric_value(text, name, service="organization", method=m) for m in ("register_unit",))


def test_dropped_broker_connections_cost_clients_nothing(platform):
    results, statuses, failures, durations = {}, Counter(), [], []
    resent_before = gateway_metric(platform, "gateway_rpc_resent_total")
    clients = [threading.Thread(target=register, args=(platform, i, results, statuses, failures, durations))
               for i in range(CLIENTS)]
    for client in clients:
        client.start()
    for drop in (1, 2):
        wait_for(lambda: len(results) >= drop * CLIENTS * UNITS_EACH // 3, timeout=60, interval=0.02,
                 what="writes under way")
        service = platform.pid("organization")
        os.kill(service, signal.SIGSTOP)  # calls wait for it: in flight when the connection drops
        try:
            time.sleep(0.5)
            assert close_broker_connections(platform.amqp_uri, "gateway rpc"), "no gateway RPC connection to drop"
            time.sleep(0.5)
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
