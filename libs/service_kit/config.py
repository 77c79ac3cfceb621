"""Service configuration from environment variables, as the nameko config dict.

Every key a service or the kit reads is listed here with its default, so the README's
configuration table and the Kubernetes ConfigMap have one place to agree with."""

import os

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"

COMMON_DEFAULTS = {
    "AMQP_URI": DEFAULT_AMQP_URI,
    "LOG_LEVEL": "INFO",
    "EVENT_MAX_ATTEMPTS": "5",
    "EVENT_RETRY_DELAYS_SECONDS": "1,5,30,120",
    "OUTBOX_POLL_SECONDS": "1.0",
    "MAX_WORKERS": "10",
    "COMMAND_LOG_RETENTION_HOURS": "168",
    # How long a database call waits for a reachable server: short, so that a service whose
    # database is away answers 503 (try again) before its caller's RPC timeout, not a 504 later.
    "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000",
    # How often a process records that it is alive beside its transactions' sessions; silent for
    # 4 of these, its open transactions are ended by another (service_kit.transaction_owners).
    "TRANSACTION_OWNER_HEARTBEAT_SECONDS": "2",
    # Signed actors (service_kit.actor_tokens): every issuer's public key, and this process's
    # own private key (needed by a service that calls another). No defaults: `make run` and
    # the test kit generate a keyring; production takes them from its Secrets.
    "ACTOR_PUBLIC_KEYS": "",
    "ACTOR_SIGNING_KEY": "",
}


def env_config(service_name: str, default_http_port: int, database: str | None = None,
               **service_defaults: str) -> dict:
    """Build a nameko config dict for `service_name` from the environment; its database is
    `database` (default: the service's name) unless MONGODB_<SERVICE>_DB names another."""
    values = {**COMMON_DEFAULTS, **service_defaults}
    config = {key: os.environ.get(key, default) for key, default in values.items()}
    mongodb_uri = os.environ.get("MONGODB_URI")
    if not mongodb_uri:
        raise SystemExit("MONGODB_URI is not set: point it at MongoDB (make run starts SecantusDB)")
    config["MONGODB_URI"] = mongodb_uri
    env_name = service_name.upper().replace("-", "_")
    config["MONGODB_DATABASE"] = os.environ.get(f"MONGODB_{env_name}_DB", database or service_name)
    http_port = int(os.environ.get("HTTP_PORT", default_http_port))
    config["WEB_SERVER_ADDRESS"] = f"{os.environ.get('HTTP_HOST', '0.0.0.0')}:{http_port}"
    config["max_workers"] = int(config.pop("MAX_WORKERS"))
    config["serializer"] = "json"
    # Events arrive as CloudEvents in structured mode (registered by service_kit.outbox); RPC stays JSON.
    config["ACCEPT"] = ["json", "cloudevents"]
    return config


def retry_delays(config: dict) -> list[int]:
    return [int(d) for d in str(config.get("EVENT_RETRY_DELAYS_SECONDS", "1,5,30,120")).split(",") if d]


def max_attempts(config: dict) -> int:
    return int(config.get("EVENT_MAX_ATTEMPTS", 5))
