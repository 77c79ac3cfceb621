"""What every service offers operators: /metrics, /healthz, /readyz over HTTP, and the
dead-letter queue over RPC. A service class inherits `OperationsMixin` to get them."""

import logging
import time

from kombu import Connection
from .entrypoints import rpc
from nameko.web.handlers import http
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.wrappers import Response

from platform_contracts.problems import Rejected

from . import topology
from .auth import require_admin

log = logging.getLogger(__name__)

READINESS_CACHE_SECONDS = 2.0


class OperationsMixin:
    """Needs `self.store` (StoreProvider) and `self.config` (nameko Config)."""

    _readiness = (0.0, None)

    @http("GET", "/metrics")
    def serve_metrics(self, request):
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    @http("GET", "/healthz")
    def serve_healthz(self, request):
        return Response('{"status": "alive"}', content_type="application/json")

    @http("GET", "/readyz")
    def serve_readyz(self, request):
        checked_at, failure = OperationsMixin._readiness
        if time.monotonic() - checked_at > READINESS_CACHE_SECONDS:
            failure = self._check_dependencies()
            OperationsMixin._readiness = (time.monotonic(), failure)
        if failure:
            return Response(f'{{"status": "not ready", "detail": "{failure}"}}', status=503,
                            content_type="application/json")
        return Response('{"status": "ready"}', content_type="application/json")

    def _check_dependencies(self) -> str | None:
        try:
            self.store.client.admin.command("ping")
        except Exception as exc:
            log.warning("readiness: database unreachable: %s", exc)
            return "database unreachable"
        try:
            with Connection(self.config["AMQP_URI"], connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:
            log.warning("readiness: broker unreachable: %s", exc)
            return "broker unreachable"
        return None

    @rpc
    def list_dead_letters(self, limit=100, actor=None):
        require_admin(actor)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise Rejected.invalid(["query", "limit"], "must be an integer from 1 to 1000")
        items = topology.list_dead_letters(self.config["AMQP_URI"], self.name, limit)
        return {"items": items}

    @rpc
    def replay_dead_letters(self, message_ids=None, actor=None):
        require_admin(actor)
        if message_ids is not None and not (
            isinstance(message_ids, list) and all(isinstance(m, str) for m in message_ids)
        ):
            raise Rejected.invalid("message_ids", "must be a list of message ids, or null for all")
        return {"replayed": topology.replay_dead_letters(self.config["AMQP_URI"], self.name, message_ids)}
