"""Fixtures for the cross-service tests: the platform started as `make run` starts it, on
free ports, a RabbitMQ vhost of these tests' own and a temporary data directory."""

import pytest

from platform_testing.plugin import own_vhost_and_services
from tests.harness import RunningPlatform, SseListener

# Services of this folder's own, on a vhost and databases no other test folder's services share.
amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()


@pytest.fixture(scope="session")
def platform(tmp_path_factory, amqp_uri):
    # Every listener of the session streams as admin, and a closed one stays connected until its
    # next event: more than the gateway's default cap of streams per user.
    running = RunningPlatform(tmp_path_factory.mktemp("platform"), amqp_uri, extra_env={"STREAM_MAX_PER_USER": "100"})
    yield running
    running.stop()
    assert any("stopped" in line for line in running.output), "".join(running.output[-20:])


@pytest.fixture
def sse(platform):
    listeners = []

    def listen(params: dict | None = None, last_event_id: str | None = None, token: str | None = None):
        listener = SseListener(platform, params or {}, last_event_id, token)
        listeners.append(listener)
        return listener

    yield listen
    for listener in listeners:
        listener.close()
