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
  start_service          the same, stopped when the test ends (a second replica, a restart: it
                         finds the session service's database)
  cluster_rpc            a ClusterRpcProxy on amqp_uri: cluster_rpc.<service>.<method>(...); raises Rejected;
                         signs `actor=` as the gateway does (platform_testing.actors; .unsigned: bare)

A test folder whose services live as long as the session keeps them apart from every other
folder's (a service would answer another folder's calls; `make run` refuses a vhost where
services already run) with `amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()`
in its conftest: a vhost, databases and an RPC proxy of its own.
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

def _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, suffix: str):
    from .processes import ServiceStarter

    return ServiceStarter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, suffix)


@pytest.fixture(scope="session")
def start_session_service(mongodb_uri, amqp_uri, field_encryption_key, service_logs):
    starter = _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, SESSION_SUFFIX)
    yield starter
    starter.stop_all()


@pytest.fixture
def start_service(start_session_service, mongodb_uri, amqp_uri, field_encryption_key, service_logs):
    starter = _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, start_session_service.suffix)
    yield starter
    starter.stop_all()


def own_vhost_and_services():
    """`amqp_uri`, `start_session_service` and `cluster_rpc` fixtures of a test folder's own (see
    above: session fixtures are made once per session, so each that depends on the vhost is
    made again here)."""

    @pytest.fixture(scope="session", name="amqp_uri")
    def own_vhost():
        from .infrastructure import rabbit_vhost

        with rabbit_vhost() as uri:
            yield uri

    @pytest.fixture(scope="session", name="start_session_service")
    def own_services(mongodb_uri, amqp_uri, field_encryption_key, service_logs):
        starter = _starter(mongodb_uri, amqp_uri, field_encryption_key, service_logs, uuid.uuid4().hex[:8])
        yield starter
        starter.stop_all()

    return own_vhost, own_services, pytest.fixture(scope="session", name="cluster_rpc")(_cluster_rpc)


def _cluster_rpc(amqp_uri):
    from .events import rpc_cluster

    with rpc_cluster(amqp_uri) as cluster:
        yield cluster


cluster_rpc = pytest.fixture(scope="session", name="cluster_rpc")(_cluster_rpc)


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
