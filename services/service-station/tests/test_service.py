"""The service-station service on the chassis, run as production runs it
(`python -m service_kit.chassis.run service-station`, on a real broker and database): it
migrates, serves health and metrics, answers its admin RPCs only to an admin, and stops
cleanly on SIGTERM. Its rules: test_stations.py (through RPC), test_use_cases.py, test_domain.py."""

import signal
import subprocess
import sys

import pytest

from platform_contracts.problems import Rejected
from platform_testing.processes import metric_value
from platform_testing.waiting import wait_for

ADMIN = {"username": "root", "role": "admin", "scope": None}
OPERATOR = {"username": "op", "role": "operator", "scope": "370113"}
STOP_GRACE_SECONDS = 10  # after which a supervisor kills a process that has not stopped


def test_its_dead_letters_are_for_admins_only_and_every_call_is_counted(station, cluster_rpc):
    assert station.ready()
    service = cluster_rpc["service-station"]
    assert service.list_dead_letters(10, actor=ADMIN) == {"items": []}
    assert service.replay_dead_letters(None, actor=ADMIN) == {"replayed": 0}
    with pytest.raises(Rejected) as refused:
        service.list_dead_letters(10, actor=OPERATOR)
    assert refused.value.status == 403

    def counted(outcome):  # nameko records the outcome just after the reply has gone
        return metric_value(station.metrics(), "service_entrypoint_requests_total", service="service-station",
                            entrypoint="list_dead_letters", kind="rpc", outcome=outcome) == 1

    for outcome in ("success", "rejected"):
        wait_for(lambda: counted(outcome), timeout=5, what=f"the {outcome} call counted")


def test_migrate_prepares_and_exits(station, mongodb_uri, amqp_uri):
    env = {**station.env, "HTTP_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "service_kit.chassis.run", "service-station", "migrate"],
                            env={**subprocess.os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "indexes and broker topology are in place" in result.stderr


def test_sigterm_stops_it_cleanly_and_soon(start_service):
    replica = start_service("service-station")
    replica.process.send_signal(signal.SIGTERM)
    assert replica.process.wait(STOP_GRACE_SECONDS) == 0  # by itself, before a supervisor would kill it


def test_sigterm_while_it_is_still_starting_stops_it_cleanly(start_service):
    """The health endpoint answers before the consumers have started: a stop asked for then
    waits for them, rather than stopping a consumer mid-start and exiting 1."""
    import urllib.request

    replica = start_service("service-station", wait=False)

    def alive():
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.http_port}/healthz", timeout=1) as response:
            return response.status == 200

    wait_for(alive, timeout=60, interval=0.01, what="the first /healthz")
    replica.process.send_signal(signal.SIGTERM)
    assert replica.process.wait(10) == 0
