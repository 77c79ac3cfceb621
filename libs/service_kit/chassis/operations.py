"""What every service offers operators over HTTP: /metrics, /healthz, /readyz (the
dead-letter list and replay are ChassisService's RPCs).

The HTTP endpoints are not nameko entrypoints. nameko's @http runs every request as a
worker from the pool that RPC calls and event handlers share (max_workers), so a busy
service could not answer its liveness probe in time and the kubelet restarted it exactly
when it was busy. `OperationsServer` answers them from green threads of its own, on the
address nameko's web server would use (WEB_SERVER_ADDRESS, from HTTP_HOST/HTTP_PORT),
and keeps answering while a stopping service drains its workers."""

import json
import logging
import time

import eventlet
import pymongo
from eventlet import wsgi
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko.constants import WEB_SERVER_CONFIG_KEY
from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, parse_address

from .. import exposition
from .providers import StoreProvider

log = logging.getLogger(__name__)

READINESS_CACHE_SECONDS = 2.0
# Each dependency check gives up after this, well inside the probes' 3 s timeout (a
# MongoDB ping would otherwise wait for server selection, 30 s by default).
CHECK_TIMEOUT_SECONDS = 2.0
MAX_CONNECTIONS = 32  # probes and scrapes at once; more wait to be accepted
SOCKET_TIMEOUT_SECONDS = 10.0  # an idle or stalled client gives its slot back
JSON = "application/json"


class OperationsServer(DependencyProvider):
    """Serves /metrics, /healthz and /readyz outside nameko's worker pool.

    /readyz is 503 with a detail until the service consumes its queues (the runner calls
    `serving()` once the container has started: the extensions start together, so this
    server answers before the RPC consumer is bound), and while the database or the broker is
    unreachable; the result is cached for READINESS_CACHE_SECONDS and concurrent probes
    share one check.
    Everything runs on the service's eventlet hub: a handler that computes for seconds
    without any I/O still delays the answer (none does; liveness allows 30 s)."""

    def setup(self):
        http_entrypoints = [e.method_name for e in self.container.entrypoints if isinstance(e, HttpRequestHandler)]
        if http_entrypoints:  # nameko's web server would bind the same address
            raise ConfigurationError(
                f"{self.container.service_name}: @http entrypoints {http_entrypoints} would share the port of "
                "/metrics, /healthz and /readyz; serve them elsewhere")
        stores = [d for d in self.container.dependencies if isinstance(d, StoreProvider)]
        if len(stores) != 1:
            raise ConfigurationError(f"{self.container.service_name}: readiness needs exactly one StoreProvider")
        self._store = stores[0]
        self.bind_addr = parse_address(self.container.config.get(WEB_SERVER_CONFIG_KEY, "0.0.0.0:8000"))
        self._readiness = (float("-inf"), None)
        self._checking = Semaphore()
        self._pool = eventlet.GreenPool(MAX_CONNECTIONS)
        self._sock = self._accepting = None
        self._serving = False

    def serving(self):
        """Called by the runner once every entrypoint consumes: from now on, ready."""
        self._serving = True

    def start(self):
        self._sock = eventlet.listen(self.bind_addr)
        self._sock.settimeout(None)  # as nameko's WebServer: https://github.com/celery/kombu/issues/838
        self._server = wsgi.Server(
            self._sock, self._sock.getsockname(), self._app, protocol=HttpOnlyProtocol,
            log_output=False, debug=False, socket_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        # A managed thread: if accepting fails, the container dies and the process exits.
        self._accepting = self.container.spawn_managed_thread(self._accept)

    def _accept(self):
        while True:
            sock, address = self._sock.accept()
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._pool.spawn(self._server.process_request, [address, sock, wsgi.STATE_IDLE])

    def stop(self):
        # Called after the workers have drained: until then, probes keep being answered.
        if self._accepting is not None:
            self._accepting.kill()
        if self._sock is not None:
            self._sock.close()
        for thread in list(self._pool.coroutines_running):
            thread.kill()

    kill = stop

    # ---- the endpoints -------------------------------------------------------------------

    def _app(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        handler = {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz}.get(path)
        headers = [exposition.VARY] if path == "/metrics" else []
        if handler is None:
            status, content_type, body = "404 Not Found", JSON, b'{"status": "not found"}'
        elif method not in ("GET", "HEAD"):
            status, content_type, body = "405 Method Not Allowed", JSON, b'{"status": "method not allowed"}'
            headers.append(("Allow", "GET, HEAD"))
        else:
            try:
                status, content_type, body = handler(environ)
            except Exception:  # answer, and say why in the log, rather than drop the connection
                log.exception("operations endpoint %s failed", path)
                status, content_type, body = "500 Internal Server Error", JSON, b'{"status": "error"}'
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    @staticmethod
    def _metrics(environ):
        """OpenMetrics when the scraper's Accept asks for it, else the classic text format
        (service_kit.exposition)."""
        body, content_type = exposition.render(environ.get("HTTP_ACCEPT"))
        return "200 OK", content_type, body

    @staticmethod
    def _healthz(environ):
        return "200 OK", JSON, b'{"status": "alive"}'

    def _readyz(self, environ):
        failure = self.readiness()
        if failure:
            return "503 Service Unavailable", JSON, json.dumps({"status": "not ready", "detail": failure}).encode()
        return "200 OK", JSON, b'{"status": "ready"}'

    def readiness(self) -> str | None:
        """None when ready, else what is unreachable (or that the service is still starting)."""
        if not self._serving:
            return "starting: not consuming its queues yet"
        with self._checking:  # probes arriving during a check wait for its result
            checked_at, failure = self._readiness
            if time.monotonic() - checked_at > READINESS_CACHE_SECONDS:
                failure = self._check_dependencies()
                self._readiness = (time.monotonic(), failure)
        return failure

    def _check_dependencies(self) -> str | None:
        try:
            with pymongo.timeout(CHECK_TIMEOUT_SECONDS):
                self._store.store.client.admin.command("ping")
        except Exception as exc:
            log.warning("readiness: database unreachable: %s", exc)
            return "database unreachable"
        try:
            with Connection(self.container.config["AMQP_URI"], connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:
            log.warning("readiness: broker unreachable: %s", exc)
            return "broker unreachable"
        return None
