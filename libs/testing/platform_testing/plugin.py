"""The platform's pytest plugin (entry point `pytest11`): fixtures every test folder shares.

All of them are lazy: nothing starts until a test asks for it, so unit tests (the domain,
use cases on `fake_uow`) run without RabbitMQ or MongoDB.

Infrastructure, once per session:
  mongodb_uri            a fresh SecantusDB (or MONGODB_URI)
  amqp_uri               a fresh RabbitMQ vhost (or TEST_AMQP_URI)
  field_encryption_key   a random FIELD_ENCRYPTION_KEY
  service_logs           the folder service processes log to

Services and clients:
  start_session_service  start_session_service(name, env=None, wait=True) -> ServiceProcess: a
                         registry service as a process (ready on /readyz), stopped when the session ends
  start_service          the same, stopped when the test ends (a second replica, a restart)
  cluster_rpc            a ClusterRpcProxy on amqp_uri: cluster_rpc.<service>.<method>(...); raises Rejected
  event_tap              event_tap(exchange, amqp_uri=None) -> EventTap, closed when the test ends

Unit tests:
  fake_db                an in-memory database (mongomock), fresh per test
  fake_uow               fake_uow(source, now=None) -> FakeUnitOfWork on fake_db
"""

import base64
import os
import uuid

import pytest

# One suffix per test session: a service started twice (a second replica) finds its database.
SESSION_SUFFIX = uuid.uuid4().hex[:8]


def pytest_configure(config):
    # RPC proxies made anywhere in the tests raise Rejected itself, not a RemoteError.
    try:
        from .events import register_rejected
        register_rejected()
    except ImportError:  # nameko not installed: no RPC proxies either
        pass


# ---- infrastructure ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mongodb_uri():
    from .infrastructure import mongodb_server

    with mongodb_server() as uri:
        yield uri


@pytest.fixture(scope="session")
def amqp_uri():
    from .infrastructure import rabbit_vhost

    with rabbit_vhost() as uri:
        yield uri


@pytest.fixture(scope="session")
def field_encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("service-logs")


# ---- services and clients ------------------------------------------------------------------

def _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs):
    from .processes import ServiceStarter

    return ServiceStarter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, SESSION_SUFFIX)


@pytest.fixture(scope="session")
def start_session_service(mongodb_uri, amqp_uri, field_encryption_key, service_logs):
    starter = _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs)
    yield starter
    starter.stop_all()


@pytest.fixture
def start_service(mongodb_uri, amqp_uri, field_encryption_key, service_logs):
    starter = _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def cluster_rpc(amqp_uri):
    from .events import rpc_cluster

    with rpc_cluster(amqp_uri) as cluster:
        yield cluster


@pytest.fixture
def event_tap(request):
    from .events import EventTap

    taps = []

    def tap(exchange: str, amqp_uri: str | None = None) -> EventTap:
        opened = EventTap(amqp_uri or request.getfixturevalue("amqp_uri"), exchange)
        taps.append(opened)
        return opened

    yield tap
    for opened in taps:
        opened.close()


# ---- unit tests ----------------------------------------------------------------------------

@pytest.fixture
def fake_db():
    from .fake_uow import fake_database

    return fake_database()


@pytest.fixture
def fake_uow(fake_db):
    from .fake_uow import FakeUnitOfWork

    def make(source: str, **options) -> FakeUnitOfWork:
        return FakeUnitOfWork(source, fake_db, **options)

    return make
