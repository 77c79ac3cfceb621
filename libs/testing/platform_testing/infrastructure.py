"""Real infrastructure for integration tests: a SecantusDB server (or the MongoDB named by
MONGODB_URI) and an isolated RabbitMQ virtual host, so tests never share state with a
running platform or with each other; and the local broker's view of its connections."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .waiting import free_port, wait_for

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


# ---- MongoDB (SecantusDB) ------------------------------------------------------------------

def start_secantus(storage_path: str, port: int, log_path: str | None = None) -> subprocess.Popen:
    log = open(log_path or os.devnull, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", storage_path, "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def mongo_ready(uri: str) -> bool:
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        return client.admin.command("ping").get("ok") == 1
    finally:
        client.close()


@contextlib.contextmanager
def mongodb_server():
    """Yield a MongoDB URI: MONGODB_URI if set, else a fresh SecantusDB on a free port."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    storage = tempfile.mkdtemp(prefix="secantus-test-")
    port = free_port()
    proc = start_secantus(storage, port, os.path.join(storage, "server.log"))
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        wait_for(lambda: mongo_ready(uri), timeout=30, what="SecantusDB")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(storage, ignore_errors=True)


# ---- RabbitMQ --------------------------------------------------------------------------------

def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


@contextlib.contextmanager
def rabbit_vhost():
    """Yield an AMQP URI on a fresh virtual host (deleted afterwards).

    Uses rabbitmqctl on the local broker; with TEST_AMQP_URI set, uses that broker as is."""
    if os.environ.get("TEST_AMQP_URI"):
        yield os.environ["TEST_AMQP_URI"]
        return
    vhost = f"test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    parts = urlsplit(DEFAULT_AMQP_URI)
    try:
        yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    finally:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)


def broker_connections(amqp_uri: str, connection_name: str) -> list[str]:
    """The local broker's connections of `amqp_uri`'s vhost that carry `connection_name`."""
    vhost = unquote(urlsplit(amqp_uri).path[1:]) or "/"
    rows = [row.split("\t", 2) for row in
            _rabbitmqctl("-s", "list_connections", "pid", "vhost", "client_properties").splitlines()]
    named = f'{{"connection_name","{connection_name}"}}'  # as the table formatter prints it
    return [pid for pid, in_vhost, properties in rows if in_vhost == vhost and named in properties]


def close_broker_connections(amqp_uri: str, connection_name: str) -> list[str]:
    """Have the local broker close those connections (as an operator or a restart would); their
    ids. The broker sends the close at once; it lists a connection until the client answers."""
    pids = broker_connections(amqp_uri, connection_name)
    for pid in pids:
        _rabbitmqctl("close_connection", pid, "closed by a test")
    return pids


def queue_consumers(amqp_uri: str, queue: str) -> int:
    """How many consumers the broker counts on `queue` (a passive declare)."""
    from kombu import Connection

    with Connection(amqp_uri) as connection:
        _, _, consumers = connection.default_channel.queue_declare(queue, passive=True)
    return consumers


def queue_depth(amqp_uri: str, queue: str) -> int:
    """How many messages wait on `queue`, ready for a consumer (not those delivered and not yet
    acknowledged): a passive declare."""
    from kombu import Connection

    with Connection(amqp_uri) as connection:
        _, ready, _ = connection.default_channel.queue_declare(queue, passive=True)
    return ready
