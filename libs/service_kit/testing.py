"""Real infrastructure for integration tests: a SecantusDB server (or the MongoDB named by
MONGODB_URI) and an isolated RabbitMQ virtual host, so tests never share state with a
running platform or with each other."""

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pymongo
from kombu import Connection, Exchange, Queue

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing waited for may raise until it is ready
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def start_secantus(storage_path: str, port: int, log_path: str | None = None) -> subprocess.Popen:
    log = open(log_path or os.devnull, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", storage_path, "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def mongo_ready(uri: str) -> bool:
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


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


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


def queue_consumers(amqp_uri: str, queue: str) -> int:
    """How many consumers the broker counts on `queue` (a passive declare)."""
    from kombu import Connection

    with Connection(amqp_uri) as connection:
        _, _, consumers = connection.default_channel.queue_declare(queue, passive=True)
    return consumers


class ServiceProcess:
    """A service started the way production starts it (`python -m <module>`), in a subprocess."""

    def __init__(self, module: str, env: dict, http_port: int, log_path: str, script: str | None = None):
        self.module, self.env, self.http_port, self.log_path = module, env, http_port, log_path
        self.argv = [sys.executable, script] if script else [sys.executable, "-m", module]
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **self.env},
            stdout=log, stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self.ready, timeout=60, what=f"{self.module} /readyz")
        return self

    def ready(self) -> bool:
        import urllib.request

        if self.process.poll() is not None:
            raise RuntimeError(f"{self.module} exited with {self.process.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill would leave things."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def metric_value(metrics_text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class EventTap:
    """A queue bound to an events exchange that records everything published on it."""

    def __init__(self, amqp_uri: str, exchange: str):
        self.connection = Connection(amqp_uri)
        self.queue = Queue(f"tap-{uuid.uuid4().hex[:8]}", exchange=Exchange(exchange, "topic", durable=True),
                           routing_key="#", auto_delete=True)
        self.queue(self.connection.default_channel).declare()
        self.seen: list[dict] = []

    def drain(self) -> list[dict]:
        bound = self.queue(self.connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            self.seen.append(json.loads(message.body))
        return self.seen

    def wait_for(self, predicate, timeout: float = 15) -> list[dict]:
        def matched():
            return [e for e in self.drain() if predicate(e)]
        return wait_for(matched, timeout=timeout, what="events on the tap")

    def close(self):
        self.connection.release()


# Serial numbers from a random start: unique within a process, and across processes unless
# two runs issue hundreds of millions of codes.
_credit_serials = itertools.count(uuid.uuid4().int % (9 * 10**8))


def credit_code(division: str = "370113") -> str:
    """A fresh, valid unified social credit code for a unit in `division`."""
    from platform_contracts.codes import credit_code_check_character

    body = f"91{division[:6]}{next(_credit_serials) % 10**9:09d}"
    return body + credit_code_check_character(body)
