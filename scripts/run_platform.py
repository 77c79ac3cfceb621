"""`make run`: the whole platform on one machine, on embedded defaults.

Starts SecantusDB (unless MONGODB_URI names a MongoDB), makes sure RabbitMQ answers at
AMQP_URI (starting the local rabbitmq-server if it is installed), then runs every service and
the gateway, restarting any that dies, until Ctrl-C or SIGTERM stops them all."""

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from amqp.exceptions import NotFound
from kombu import Connection
from kombu.exceptions import OperationalError

from service_kit import registry
from service_kit.actor_tokens import PUBLIC_KEYS_ENV, SIGNING_KEY_ENV, generate_keyring
from service_kit.pii import KEY_ENV, PREVIOUS_KEYS_ENV

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PLATFORM_DATA_DIR", ROOT / ".data"))
PYTHON = sys.executable
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
# A stop: every service and the gateway get SIGTERM at once and stop gracefully (a service in
# about a second, plus its longest call in flight; see service_kit.chassis.runner); one still running
# after STOP_GRACE_SECONDS is killed. Then the database, which they need until they are done
# (SecantusDB takes about 2 s): within 10 s in all.
STOP_GRACE_SECONDS = 7
DATABASE_STOP_SECONDS = 5
# Every service of services/registry.toml, in the order listed there (the gateway last).
SERVICES = registry.load()


def say(message: str) -> None:
    print(f"[platform] {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"[platform] {what} did not come up within {seconds:.0f}s")


def secret_file(name: str, env: str, generate=lambda: secrets.token_urlsafe(18)) -> str:
    """A value from the environment, else one generated once and kept in the data directory."""
    if os.environ.get(env):
        return os.environ[env]
    path = DATA / name
    if not path.exists():
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()


def field_key(value=None) -> str:
    return base64.b64encode(value or os.urandom(32)).decode()


# Before each service had a key of its own, one key sealed every service's personal data.
LEGACY_FIELD_KEY = "field_encryption_key"


def field_keys() -> dict[str, dict]:
    """Each service that keeps personal data gets a key of its own (one service's key opens no
    other's data): <SERVICE>_FIELD_ENCRYPTION_KEY, else generated once and kept in the data
    directory. Data sealed under the key the services once shared stays readable: while that
    key's file is there it is each service's previous key, and each service's migrate seals
    what it sealed again under the new one (delete the file once every service has started)."""
    legacy = DATA / LEGACY_FIELD_KEY
    keys = {}
    for name, entry in SERVICES.items():
        if not entry.needs_field_key:
            continue
        keys[name] = {KEY_ENV: secret_file(f"field_encryption_key.{name}", f"{entry.env_prefix}_{KEY_ENV}", field_key)}
        if legacy.exists():
            keys[name][PREVIOUS_KEYS_ENV] = legacy.read_text().strip()
    return keys


def actor_keys() -> dict[str, dict]:
    """Each process's key for signing the actors it passes, and every process's public key
    (service_kit.actor_tokens): from ACTOR_PUBLIC_KEYS and <SERVICE>_ACTOR_SIGNING_KEY when
    given (the tests give theirs), else made afresh for this run (a signed actor lives a
    minute: nothing needs the keys longer than the processes do)."""
    if os.environ.get(PUBLIC_KEYS_ENV):
        signing = {name: os.environ.get(f"{entry.env_prefix}_{SIGNING_KEY_ENV}", "") for name, entry in SERVICES.items()}
        public = os.environ[PUBLIC_KEYS_ENV]
    else:
        signing, public = generate_keyring(SERVICES)
    return {name: {PUBLIC_KEYS_ENV: public, SIGNING_KEY_ENV: signing[name]} for name in SERVICES}


class Platform:
    def __init__(self):
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[list[str], dict]] = {}
        self.secantus: subprocess.Popen | None = None
        self.secantus_argv: list[str] = []
        self.stopping = False
        self.forcing = False
        self.started_rabbitmq = False  # then Ctrl-C stops it too

    # ---- infrastructure ------------------------------------------------------------------

    def mongodb_uri(self) -> str:
        if os.environ.get("MONGODB_URI"):
            say("using MongoDB at MONGODB_URI")
            return os.environ["MONGODB_URI"]
        port = int(os.environ.get("SECANTUS_PORT", 27117))
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        if port_open("127.0.0.1", port):
            raise SystemExit(f"[platform] port {port} is taken: set SECANTUS_PORT or MONGODB_URI")
        storage = DATA / "secantus"
        storage.mkdir(parents=True, exist_ok=True)
        # Every commit synced to the journal before it is acknowledged. Without it a commit waits
        # in WiredTiger's log buffer, and a kill -9 of the database lost acknowledged writes
        # (tests/test_fault_database.py: 1 of 30, and 50 of 50 transactions committed just
        # before the kill in a bare trial); on this machine the cost was within the noise.
        config = DATA / "secantusd.toml"
        config.write_text("[storage]\nsync_on_commit = true\n")
        self.secantus_argv = [PYTHON, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                              "--storage-path", str(storage), "--log-level", "WARNING", "--config", str(config)]
        self.start_database()
        wait_until(lambda: port_open("127.0.0.1", port), 60, "SecantusDB")
        say(f"SecantusDB on 127.0.0.1:{port}, data in {storage}")
        return uri

    def start_database(self) -> None:
        """SecantusDB, supervised like the services: restarted if it dies (it recovers its
        data from its journal), and stopped by this launcher's stop."""
        log = open(DATA / "secantus.log", "ab")
        self.secantus = subprocess.Popen(self.secantus_argv, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        (DATA / "pids").mkdir(exist_ok=True)
        (DATA / "pids" / "secantus").write_text(str(self.secantus.pid))

    def ensure_rabbitmq(self, amqp_uri: str) -> None:
        parts = urlsplit(amqp_uri)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5672
        if port_open(host, port):
            return
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"[platform] RabbitMQ at {host}:{port} does not answer (AMQP_URI)")
        if subprocess.run(["which", "rabbitmq-server"], capture_output=True).returncode != 0:
            raise SystemExit(
                "[platform] RabbitMQ is not running and not installed.\n"
                "           Install it with: sudo apt-get install rabbitmq-server\n"
                "           or point AMQP_URI at a running broker."
            )
        say("RabbitMQ is not running: starting rabbitmq-server -detached")
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        self.started_rabbitmq = True
        wait_until(lambda: port_open(host, port), 90, "RabbitMQ")

    @staticmethod
    def ensure_broker_unused(amqp_uri: str) -> None:
        """Refuse a vhost another running platform already serves: its services and these
        would compete for the same RPC and event queues and answer each other's calls."""
        try:
            with Connection(amqp_uri, connect_timeout=10) as connection:
                for name in (entry.name for entry in SERVICES.values() if entry.kind == "nameko"):
                    queue = f"rpc-{name}"
                    try:
                        # Passive: only asks; a queue that does not exist is not created.
                        _, _, consumers = connection.channel().queue_declare(queue, passive=True)
                    except NotFound:  # never run on this vhost (the broker closed that channel)
                        continue
                    if consumers:
                        raise SystemExit(
                            f"[platform] {queue} already has {consumers} consumer(s) on this vhost: another "
                            "platform is running on the same broker.\n"
                            "           Stop it, or give this one a vhost of its own: "
                            "rabbitmqctl add_vhost mine && rabbitmqctl set_permissions -p mine guest '.*' '.*' '.*'\n"
                            "           then AMQP_URI=amqp://guest:guest@127.0.0.1:5672/mine make run"
                        )
        except OperationalError as exc:
            raise SystemExit(f"[platform] RabbitMQ refused AMQP_URI: {exc}")

    # ---- processes -----------------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: dict) -> None:
        self.commands[name] = (argv, env)
        log_path = DATA / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        (DATA / "pids").mkdir(exist_ok=True)
        (DATA / "pids" / name).write_text(str(process.pid))
        say(f"{name} started (pid {process.pid}, log {log_path})")

    def supervise(self) -> None:
        while not self.stopping:
            if self.secantus is not None and (code := self.secantus.poll()) is not None and not self.stopping:
                # Services answer 503 (try again) meanwhile; they reconnect by themselves.
                say(f"SecantusDB exited with {code}: restarting it")
                self.start_database()
            for name, process in list(self.processes.items()):
                code = process.poll()
                if code is not None and not self.stopping:
                    say(f"{name} exited with {code}: restarting")
                    self.start(name, *self.commands[name])
            time.sleep(0.5)

    def stop(self, signum=None, frame=None):
        if self.stopping:
            # A second Ctrl-C (or SIGTERM) while stopping: wait no longer.
            if signum is not None and not self.forcing:
                self.forcing = True
                say("asked again: killing what is still running")
                for process in [*self.processes.values(), self.secantus]:
                    if process is not None and process.poll() is None:
                        process.kill()
            return
        self.stopping = True
        started = time.monotonic()
        say("stopping (Ctrl-C again to kill)")
        running = {name: process for name, process in self.processes.items() if process.poll() is None}
        for process in running.values():
            process.terminate()
        self.await_exit(running, started, STOP_GRACE_SECONDS)
        if self.secantus is not None and self.secantus.poll() is None:
            self.secantus.terminate()
            self.await_exit({"SecantusDB": self.secantus}, time.monotonic(), DATABASE_STOP_SECONDS)
        if self.started_rabbitmq:
            say("stopping the rabbitmq-server this run started")
            subprocess.run(["rabbitmqctl", "stop"], check=False, capture_output=True, timeout=120)
        say(f"stopped in {time.monotonic() - started:.1f}s")

    @staticmethod
    def await_exit(processes: dict[str, subprocess.Popen], since: float, grace: float) -> None:
        """Wait for `processes`, sent SIGTERM at `since`, saying how long each took; kill those
        still running `grace` seconds after it."""
        left = dict(processes)
        while left:
            for name, process in list(left.items()):
                code = process.poll()
                if code is not None:
                    # The gateway's uvicorn ends by raising the signal again once it has shut down.
                    outcome = ("" if code == 0 else f" (exit code {code})" if code > 0
                               else f" (ended by {signal.Signals(-code).name})")
                    say(f"{name} stopped in {time.monotonic() - since:.1f}s{outcome}")
                    del left[name]
            if left and time.monotonic() - since >= grace:
                for name, process in left.items():
                    say(f"{name} did not stop in {grace:.0f}s: killing it")
                    process.kill()
                    process.wait()
                return
            time.sleep(0.05)


def http_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return sock.recv(64).split(b" ")[1] == b"200"
    except (OSError, IndexError):
        return False


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    platform = Platform()
    signal.signal(signal.SIGINT, platform.stop)
    signal.signal(signal.SIGTERM, platform.stop)

    amqp_uri = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    platform.ensure_rabbitmq(amqp_uri)
    platform.ensure_broker_unused(amqp_uri)
    try:
        mongodb_uri = platform.mongodb_uri()
        admin_password = secret_file("admin_password", "ADMIN_PASSWORD")
        env = {
            # One process's keys are given to it alone (below), never to the others.
            **{k: v for k, v in os.environ.items() if not k.endswith((SIGNING_KEY_ENV, KEY_ENV, PREVIOUS_KEYS_ENV))},
            "AMQP_URI": amqp_uri,
            "MONGODB_URI": mongodb_uri,
            "ADMIN_PASSWORD": admin_password,
            "JWT_SECRET": secret_file("jwt_secret", "JWT_SECRET", lambda: secrets.token_urlsafe(32)),
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
        ports = {name: int(os.environ.get(entry.port_env, entry.http_port)) for name, entry in SERVICES.items()}
        for name, port in ports.items():
            if port_open("127.0.0.1", port):
                raise SystemExit(f"[platform] port {port} for {name} is taken: see README, Configuration")
        field = field_keys()
        keys = {name: {**signing, **field.get(name, {})} for name, signing in actor_keys().items()}
        for name, entry in SERVICES.items():
            own = ({"GATEWAY_PORT": str(ports[name])} if entry.kind == "gateway"
                   else {"HTTP_PORT": str(ports[name]), "HTTP_HOST": "127.0.0.1"})
            platform.start(name, [PYTHON, *entry.argv], {**env, **keys[name], **own})
        for name, port in ports.items():
            wait_until(lambda: http_ready(port) or platform.stopping, 90, name)
        if platform.stopping:
            return
        say("platform ready")
        gateway_port = ports["gateway"]
        metrics = ", ".join(f"http://127.0.0.1:{port}/metrics" for port in ports.values())
        kept = "" if os.environ.get("ADMIN_PASSWORD") else f"  (kept in {DATA / 'admin_password'})"
        print(
            f"\n  API            http://127.0.0.1:{gateway_port}/api/v1\n"
            f"  OpenAPI docs   http://127.0.0.1:{gateway_port}/docs\n"
            f"  Live events    http://127.0.0.1:{gateway_port}/api/v1/events/stream  (SSE)\n"
            f"                 ws://127.0.0.1:{gateway_port}/api/v1/events/ws\n"
            f"  Metrics        {metrics}\n"
            f"  Sign in        admin / {admin_password}{kept}\n"
            f"                 (the password the admin account was created with: one changed through the API stays\n"
            f"                 changed; to set it anew: MONGODB_URI='{mongodb_uri}' ADMIN_PASSWORD=...\n"
            f"                 .venv/bin/python -m gateway reset-admin-password)\n"
            f"  Logs           {DATA / 'logs'}\n\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        platform.supervise()
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
