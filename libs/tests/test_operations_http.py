"""/healthz, /readyz and /metrics are served outside nameko's worker pool: they answer while
every worker is busy, and /readyz still reports an unreachable database (503 with a detail)
within the probes' timeout. The service runs as a process, as in production."""

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from platform_contracts.problems import Rejected
from platform_testing import (
    ServiceProcess, free_port, mongo_ready, queue_depth, rabbit_vhost, rpc_cluster, start_secantus, wait_for,
)
from platform_testing.actors import actor_env

MAX_WORKERS = 2
HOLD_SECONDS = 5
PROBE_TIMEOUT = 2  # well under a hold: an answer that had to wait for a worker times out
READINESS_PROBE_TIMEOUT = 3  # the Deployments' readinessProbe timeoutSeconds


def get(url: str, timeout: float = PROBE_TIMEOUT) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body, status, content_type = response.read().decode(), response.status, response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        body, status, content_type = error.read().decode(), error.code, error.headers["Content-Type"]
    return status, content_type, body


@pytest.fixture
def busy(tmp_path):
    """The busy service on its own SecantusDB (which a test may stop) and vhost."""
    storage, mongodb_port = tmp_path / "db", free_port()
    storage.mkdir()
    database = start_secantus(str(storage), mongodb_port, str(tmp_path / "secantus.log"))
    mongodb_uri = f"mongodb://127.0.0.1:{mongodb_port}/?directConnection=true"
    markers = tmp_path / "markers"
    markers.mkdir()
    try:
        wait_for(lambda: mongo_ready(mongodb_uri), timeout=30, what="SecantusDB")
        with rabbit_vhost() as amqp_uri:
            port = free_port()
            service = ServiceProcess("busy", {
                "MONGODB_URI": mongodb_uri, "AMQP_URI": amqp_uri, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
                "MAX_WORKERS": str(MAX_WORKERS), "BUSY_MARKER_DIR": str(markers), **actor_env(),
            }, port, str(tmp_path / "busy.log"), script=str(Path(__file__).with_name("busy_service.py")))
            service.start()
            try:
                with rpc_cluster(amqp_uri, timeout=60) as proxy:
                    yield {"url": f"http://127.0.0.1:{port}", "rpc": proxy.busy, "markers": markers,
                           "database": database, "service": service, "amqp_uri": amqp_uri}
            finally:
                service.stop()
    finally:
        if database.poll() is None:
            database.terminate()
            database.wait(10)
        shutil.rmtree(storage, ignore_errors=True)


def workers_in_use(markers: Path) -> int:
    return len(os.listdir(markers))


def test_health_answers_while_every_worker_is_busy(busy):
    replies = [busy["rpc"].hold.call_async(HOLD_SECONDS) for _ in range(MAX_WORKERS + 1)]
    wait_for(lambda: workers_in_use(busy["markers"]) >= MAX_WORKERS, timeout=15, what="every worker busy")
    # The pool is full: the call beyond it waits on the service's queue, not taken up.
    wait_for(lambda: queue_depth(busy["amqp_uri"], "rpc-busy") == 1, timeout=15, what="the extra call queued")
    assert workers_in_use(busy["markers"]) == MAX_WORKERS

    status, content_type, body = get(busy["url"] + "/healthz")  # with the probe's own timeout
    assert (status, json.loads(body)) == (200, {"status": "alive"}) and content_type == "application/json"
    status, _, body = get(busy["url"] + "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, content_type, body = get(busy["url"] + "/metrics")
    assert status == 200 and content_type.startswith("text/plain") and "service_entrypoint_requests_total" in body
    # Still answered from outside the pool: no held call had finished meanwhile.
    assert workers_in_use(busy["markers"]) == MAX_WORKERS

    assert [reply.result() for reply in replies] == ["done"] * len(replies)
    assert workers_in_use(busy["markers"]) == len(replies)


def test_metrics_are_openmetrics_when_asked_and_never_created_series(busy):
    """The runner disables prometheus_client's `<name>_created` samples, and /metrics speaks
    OpenMetrics to a scraper whose Accept asks for it (Prometheus does), the classic text to
    one that does not (service_kit.exposition)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    admin = {"username": "root", "role": "admin", "scope": None}
    assert busy["rpc"].count_things(actor=admin) == 0  # a counter and a histogram child to expose
    # The worker's outcome is counted once its reply is on its way: wait for it, not for a time.
    wait_for(lambda: "service_entrypoint_requests_total{" in get(busy["url"] + "/metrics")[2],
             what="the call counted")
    plain = urllib.request.Request(busy["url"] + "/metrics")
    asked = urllib.request.Request(busy["url"] + "/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
    for request, content_type in ((plain, "text/plain; version=0.0.4"),
                                  (asked, "application/openmetrics-text; version=1.0.0")):
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith(content_type)
            assert response.headers["Vary"] == "Accept"
        assert 'service_entrypoint_requests_total{' in body and "service_entrypoint_duration_seconds_bucket{" in body
        assert "_created" not in body
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body)}
    assert families["service_entrypoint_requests"].type == "counter"


def test_only_the_operations_paths_are_served(busy):
    assert get(busy["url"] + "/nothing")[0] == 404
    request = urllib.request.Request(busy["url"] + "/healthz", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=PROBE_TIMEOUT)
    assert refused.value.code == 405


def test_readyz_reports_an_unreachable_database_within_the_probe_timeout(busy):
    busy["database"].terminate()
    busy["database"].wait(10)
    # Asked as the kubelet asks, with its timeout (3 s): a slower answer fails the request itself.
    wait_for(lambda: get(busy["url"] + "/readyz", timeout=READINESS_PROBE_TIMEOUT)[0] == 503, timeout=15,
             what="/readyz to report the database (past its cache)")
    status, _, body = get(busy["url"] + "/readyz", timeout=READINESS_PROBE_TIMEOUT)
    assert (status, json.loads(body)) == (503, {"status": "not ready", "detail": "database unreachable"})
    # Liveness is not readiness: the process is fine, the database is not.
    assert get(busy["url"] + "/healthz")[0] == 200
    busy["service"].kill()  # a graceful stop would wait for the database


def test_a_service_whose_database_is_away_answers_503_before_its_callers_timeout(busy):
    """A service's database calls wait MONGODB_SERVER_SELECTION_TIMEOUT_MS (2 s) for a server,
    not pymongo's 30 s: the caller gets a 503 to try again while it still waits, not a timeout
    (at the gateway a 504) followed by the call failing anyway."""
    admin = {"username": "root", "role": "admin", "scope": None}
    assert busy["rpc"].count_things(actor=admin) == 0
    busy["database"].terminate()
    busy["database"].wait(10)
    with rpc_cluster(busy["amqp_uri"], timeout=10) as proxy:  # the gateway's RPC timeout
        with pytest.raises(Rejected) as refused:
            proxy.busy.count_things(actor=admin)
    assert refused.value.status == 503
    busy["service"].kill()  # a graceful stop would wait for the database


def test_not_ready_until_the_runner_says_the_service_consumes():
    """The operations server starts with the other extensions, before the RPC consumer is
    bound: a caller told "ready" then met UnknownService (a flaky member test showed it).
    /readyz says "starting" until the runner, once the container has started, says serving."""
    from service_kit.chassis.operations import OperationsServer

    server = OperationsServer.__new__(OperationsServer)  # its state only: no container, no socket
    server._serving = False
    assert server.readiness() == "starting: not consuming its queues yet"
