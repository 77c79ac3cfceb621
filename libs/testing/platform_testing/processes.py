"""Services as processes: started the way production starts them (the registry's command,
`python -m service_kit.chassis.run <service>` for a nameko service), ready once /readyz says
so, and read through /metrics."""

import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from .waiting import free_port, wait_for

# What integration tests want quicker than production: the outbox polled every half second,
# a failing event retried once after a second, the transaction a killed process left open ended
# within about 4 s. A test's own env overrides them.
QUICK_ENV = {"OUTBOX_POLL_SECONDS": "0.5", "EVENT_RETRY_DELAYS_SECONDS": "1", "EVENT_MAX_ATTEMPTS": "2",
             "TRANSACTION_OWNER_HEARTBEAT_SECONDS": "1"}


class ServiceProcess:
    """A service in a subprocess: `python -m <module>`, `python <script>`, or `python <argv...>`.

    `ServiceProcess.of(name, ...)` starts a service of the registry with its own command."""

    def __init__(self, module: str, env: dict, http_port: int, log_path: str, script: str | None = None,
                 argv: list[str] | None = None):
        self.module, self.env, self.http_port, self.log_path = module, env, http_port, log_path
        self.name = module
        self.argv = [sys.executable, *(argv or ([script] if script else ["-m", module]))]
        self.process: subprocess.Popen | None = None

    @classmethod
    def of(cls, name: str, env: dict, http_port: int, log_path: str) -> "ServiceProcess":
        """The registry's service `name`, started with the registry's command for it."""
        from service_kit import registry

        return cls(name, env, http_port, log_path, argv=registry.entry(name).argv)

    def start(self, wait: bool = True) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **self.env},
            stdout=log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> "ServiceProcess":
        wait_for(self.ready, timeout=timeout, what=f"{self.module} /readyz")
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.module} exited with {self.process.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
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


class ServiceStarter:
    """Starts services of the registry as processes against one MongoDB and one vhost, each on
    a free port, and stops every one it started (`stop_all`). Behind the `start_service` and
    `start_session_service` fixtures.

    A service's database is `<its database>_<suffix>` unless the env given names one (under
    the registry's `MONGODB_<SERVICE>_DB`): two starters with the same suffix put replicas of a
    service in the same database. Its FIELD_ENCRYPTION_KEY is the session's."""

    def __init__(self, mongodb_uri: str, amqp_uri: str, field_encryption_key: str, log_dir: Path,
                 suffix: str | None = None):
        self.base_env = {"MONGODB_URI": mongodb_uri, "AMQP_URI": amqp_uri, "HTTP_HOST": "127.0.0.1",
                         "FIELD_ENCRYPTION_KEY": field_encryption_key, **QUICK_ENV}
        self.log_dir = Path(log_dir)
        self.suffix = suffix or uuid.uuid4().hex[:8]
        self.started: list[ServiceProcess] = []

    def database(self, name: str) -> str:
        """The database service `name` gets unless its env names another."""
        from service_kit import registry

        return f"{registry.entry(name).database}_{self.suffix}"

    def __call__(self, name: str, env: dict | None = None, *, wait: bool = True,
                 log_name: str | None = None) -> ServiceProcess:
        """Start service `name` with `env` over the defaults; with `wait`, once it is ready
        (else call `wait_ready()`). The process has `.database`, the name of its database."""
        from service_kit import registry

        entry = registry.entry(name)
        port = free_port()
        port_env = {entry.port_env: str(port)} if entry.kind == "gateway" else {"HTTP_PORT": str(port)}
        from .actors import actor_env

        full_env = {**self.base_env, **actor_env(name), entry.database_env: self.database(name), **port_env,
                    **(env or {})}
        log_path = self.log_dir / f"{log_name or name}-{port}.log"
        process = ServiceProcess.of(name, full_env, port, str(log_path))
        process.database = full_env[entry.database_env]
        self.started.append(process)
        return process.start(wait=wait)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
        self.started.clear()


def metric_value(metrics_text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
