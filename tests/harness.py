"""Drives the platform as a user would: started by scripts/run_platform.py (what `make run`
runs), then spoken to over HTTP and the event stream. Used by the end-to-end, fault and
monitoring tests and by the benchmarks."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from platform_testing import free_port, wait_for
from platform_testing.actors import platform_env
from service_kit import registry

ROOT = Path(__file__).resolve().parent.parent


class RunningPlatform:
    def __init__(self, data_dir: Path, amqp_uri: str, extra_env: dict | None = None):
        self.data_dir = data_dir
        self.admin_password = "e2e-" + uuid.uuid4().hex[:12]
        self.amqp_uri = amqp_uri
        self.secantus_port = free_port()
        self.services = registry.load()
        self.ports = {name: free_port() for name in self.services}
        self.gateway_port = self.ports["gateway"]
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.metrics_targets = {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}
        self.output: list[str] = []
        self._token: str | None = None
        env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_PASSWORD", "JWT_SECRET")}
        if env.get("MONGODB_URI"):  # a shared MongoDB: keep this run's databases apart
            suffix = uuid.uuid4().hex[:6]
            env.update({entry.database_env: f"{entry.database}_{suffix}" for entry in self.services.values()})
        env.update(
            PLATFORM_DATA_DIR=str(data_dir), AMQP_URI=amqp_uri, ADMIN_PASSWORD=self.admin_password,
            SECANTUS_PORT=str(self.secantus_port), RPC_TIMEOUT_SECONDS="5",
            RECONCILE_INTERVAL_SECONDS="86400", JOINT_ORGANIZATION_MAX_UNITS="3",
            # What a kill -9 leaves open is ended within about 4 s, not the 8 s of the default.
            TRANSACTION_OWNER_HEARTBEAT_SECONDS="1",
            # The fuzz run and the load of the fault tests come from one account and one address.
            RATE_LIMIT_PER_USER="1000000/minute", RATE_LIMIT_PER_ADDRESS="1000000/minute",
            APPEAL_SUBMISSIONS_PER_ACCOUNT="1000000/minute", APPEAL_SUBMISSIONS_PER_DEVICE="1000000/minute",
            APPEAL_SUBMISSIONS_PER_ADDRESS="1000000/minute", APPEAL_SUBMISSIONS_PER_API_KEY="1000000/minute",
        )
        env.update({entry.port_env: str(self.ports[name]) for name, entry in self.services.items()})
        env.update(platform_env())  # the kit's RPC proxies sign with these keys
        env.update(extra_env or {})
        organization = self.services["organization"]
        self.organization_database = env.get(organization.database_env, organization.database)
        self.databases = {name: env.get(entry.database_env, entry.database) for name, entry in self.services.items()}
        self.mongodb_uri = env.get("MONGODB_URI") or f"mongodb://127.0.0.1:{self.secantus_port}/?directConnection=true"
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_platform.py")], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        try:
            wait_for(lambda: any("platform ready" in line for line in self.output) or self._exited(),
                     timeout=120, interval=0.2, what="platform ready")
        except TimeoutError:
            self.stop()
            raise
        if self._exited():
            raise RuntimeError("run_platform.py exited:\n" + "".join(self.output) + self.logs())

    def _read_output(self):
        for line in self.process.stdout:
            self.output.append(line)

    def _exited(self) -> bool:
        return self.process.poll() is not None

    def logs(self) -> str:
        text = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            text.append(f"\n--- {log.name} (tail) ---\n" + "".join(log.read_text(errors="replace").splitlines(True)[-40:]))
        return "".join(text)

    def admin_token(self) -> str:
        if self._token is None:
            self._token = self.token("admin", self.admin_password)
        return self._token

    def token(self, username: str, password: str) -> str:
        response = httpx.post(f"{self.gateway_url}/api/v1/auth/token",
                              json={"username": username, "password": password}, timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token()}"}
        return httpx.Client(base_url=f"{self.gateway_url}/api/v1", headers=headers, timeout=15)

    def pid(self, name: str) -> int:
        return int((self.data_dir / "pids" / name).read_text())

    def in_flight(self) -> dict:
        """What the platform holds unfinished right now: outbox rows not yet published, per
        service, and deliveries taken but not acknowledged, per queue. Fault tests take it at
        the moment of a kill, to show the kill did not land on an idle platform."""
        import pymongo

        client = pymongo.MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=2000)
        try:
            outbox = {name: client[database].outbox.count_documents({"published_at": None})
                      for name, database in self.databases.items()}
        except pymongo.errors.PyMongoError:
            outbox = {"unknown: the database does not answer": -1}
        finally:
            client.close()
        vhost = self.amqp_uri.rsplit("/", 1)[1] or "/"
        rows = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_unacknowledged"],
                              capture_output=True, text=True, timeout=30).stdout.splitlines()
        unacked = {name: int(count) for name, count in (row.split("\t") for row in rows if "\t" in row)
                   if count.isdigit() and int(count)}
        return {"outbox_unpublished": {k: v for k, v in outbox.items() if v}, "unacknowledged": unacked}

    def left_to_deliver(self) -> dict:
        """What could still deliver an event somewhere: outbox rows not yet marked published, per
        service, and messages on the vhost's queues (ready, unacknowledged or waiting to be
        retried), but dead letters and RPC replies (a killed caller's stay until its reply queue
        expires). Empty once settled: then no late repeat of an event can still arrive."""
        import pymongo

        client = pymongo.MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=2000)
        try:
            outbox = {name: client[database].outbox.count_documents({"published_at": None})
                      for name, database in self.databases.items()}
        finally:
            client.close()
        vhost = self.amqp_uri.rsplit("/", 1)[1] or "/"
        rows = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
        queued = {name: int(count) for name, count in (row.split("\t") for row in rows if "\t" in row)
                  if count.isdigit() and int(count) and not name.endswith(".dead-letters")
                  and not name.startswith("rpc.reply-")}
        return {**{f"outbox of {k}": v for k, v in outbox.items() if v}, **queued}

    def wait_until_settled(self, timeout: float = 60) -> None:
        left: list[dict] = [{}]

        def settled() -> bool:
            left[0] = self.left_to_deliver()
            return not left[0]
        try:
            wait_for(settled, timeout=timeout, interval=0.5, what="nothing left to deliver")
        except TimeoutError:
            raise TimeoutError(f"still left to deliver after {timeout:.0f} s: {left[0]}") from None

    def kill(self, name: str) -> None:
        """SIGKILL one process; the launcher restarts it, as a process supervisor would."""
        old = self.pid(name)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self.pid(name) != old, timeout=30, what=f"{name} restarted")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class SseListener:
    """Reads the gateway's event stream in a thread and keeps every event it receives."""

    def __init__(self, platform: RunningPlatform, params: dict, last_event_id: str | None = None,
                 token: str | None = None):
        self.events: list[dict] = []  # {"id", "event", "data"}
        self.received_at: dict[str, float] = {}
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        headers = {"Authorization": f"Bearer {token or platform.admin_token()}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._request = (f"{platform.gateway_url}/api/v1/events/stream", params, headers)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._connected.wait(15):
            raise TimeoutError(f"SSE stream did not connect: {self.error!r}")

    def _run(self):
        from httpx_sse import connect_sse

        url, params, headers = self._request
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
                with connect_sse(client, "GET", url, params=params, headers=headers) as source:
                    source.response.raise_for_status()
                    self._connected.set()
                    for sse in source.iter_sse():
                        if self._stop.is_set():
                            return
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        self.received_at[event["id"]] = time.perf_counter()
                        self.events.append({"id": sse.id, "event": sse.event, "data": event})
        except Exception as exc:  # surfaced through .error and the waits below
            self.error = exc
            self._connected.set()

    def wait_for(self, predicate, timeout: float = 20) -> list[dict]:
        def found():
            if self.error:
                raise self.error
            return [e for e in list(self.events) if predicate(e["data"])]
        return wait_for(found, timeout=timeout, what="events on the SSE stream")

    def close(self):
        self._stop.set()


@dataclass
class ClientRecord:
    """What a client of the fault tests sent and was told: the unit each Idempotency-Key was
    answered with, every status (or transport error) seen, the requests waiting for an answer
    right now, and when and after how long each answer came."""

    results: dict[str, str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    outstanding: list[str] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)


def register_units_until_answered(platform: RunningPlatform, division: str, count: int, record: ClientRecord,
                                  name: str = "单位", attempts: int = 120, pause: float = 0.25) -> None:
    """Register `count` units in `division`'s streets as a real client does through faults: each
    retried under its own Idempotency-Key until it is answered below 500."""
    from platform_testing import credit_code

    with platform.client() as api:
        for index in range(count):
            body = {"credit_code": credit_code(division), "name": f"{name}{index}", "type": "enterprise",
                    "industry": "logistics", "division": f"{division}{index % 3 + 1:03d}"}
            key = uuid.uuid4().hex
            for _ in range(attempts):
                record.outstanding.append(key)
                started = time.monotonic()
                try:
                    response = api.post("/units", json=body, headers={"Idempotency-Key": key})
                    record.statuses[response.status_code] += 1
                except httpx.HTTPError as exc:
                    record.statuses[type(exc).__name__] += 1
                    response = None
                finally:
                    record.outstanding.remove(key)
                    record.durations.append(time.monotonic() - started)
                if response is not None and response.status_code in (200, 201):
                    record.results[key] = response.json()["id"]
                    record.answered_at.append(time.monotonic())
                    break
                if response is not None and response.status_code < 500:
                    record.failures.append(response.text)
                    break
                time.sleep(pause)  # the client's pause before it sends again, as a real client's
            else:
                record.failures.append(f"command {key} never answered")
