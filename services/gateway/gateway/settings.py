"""Gateway configuration, read once from the environment."""

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from service_kit.actor_tokens import GATEWAY, SIGNING_KEY_ENV, ActorSigner
from service_kit.transaction_owners import DEFAULT_HEARTBEAT_SECONDS, heartbeat_seconds_from

log = logging.getLogger(__name__)

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
# The operator console's build in a checkout (make builds it), served at /console/.
DEFAULT_CONSOLE_DIR = str(Path(__file__).resolve().parents[3] / "console" / "dist")


@dataclass(frozen=True)
class Settings:
    mongodb_uri: str
    mongodb_database: str = "gateway"
    amqp_uri: str = DEFAULT_AMQP_URI
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_secret: str = ""
    actor_signing_key: str = ""
    access_token_ttl_seconds: int = 3600
    admin_password: str | None = None
    rpc_timeout_seconds: float = 10.0
    event_log_retention_hours: float = 168.0
    user_cache_seconds: float = 2.0
    login_hashing_concurrency: int = 2
    login_hashing_queue: int = 8
    login_max_failures_per_username: int = 10
    login_max_failures_per_address: int = 100
    login_failure_window_seconds: float = 900.0
    outbox_poll_seconds: float = 1.0
    transaction_heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    log_level: str = "INFO"
    stream_recheck_seconds: float = 2.0
    stream_max_per_user: int = 5
    stream_send_timeout_seconds: float = 10.0
    stream_subscribes_per_minute: int = 30
    rate_limit_per_user: str = "600/minute"
    rate_limit_per_address: str = "120/minute"
    # Appeal submissions (appeal_guard.py), in the `limits` notation: per account, device, address.
    appeal_submissions_per_account: str = "10/hour"
    appeal_submissions_per_device: str = "10/hour"
    appeal_submissions_per_address: str = "30/hour"
    appeal_submissions_per_api_key: str = "1000/hour"
    # Ledger imports (routes/ledgers.py): the largest file taken, and imports one account may have running.
    import_max_bytes: int = 64 * 1024 * 1024
    imports_running_per_user: int = 3
    exports_per_user: str = "60/hour"  # each reads a whole ledger: thousands of RPC pages for a district
    console_dir: str = DEFAULT_CONSOLE_DIR

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        mongodb_uri = env.get("MONGODB_URI")
        if not mongodb_uri:
            raise SystemExit("MONGODB_URI is not set: point it at MongoDB (make run starts SecantusDB)")
        jwt_secret = env.get("JWT_SECRET", "")
        if not jwt_secret:
            jwt_secret = secrets.token_urlsafe(48)
            log.warning("JWT_SECRET is not set: using a random secret, so tokens will not survive a restart "
                        "and replicas will not accept each other's tokens")
        return cls(
            mongodb_uri=mongodb_uri,
            mongodb_database=env.get("MONGODB_GATEWAY_DB", "gateway"),
            amqp_uri=env.get("AMQP_URI", DEFAULT_AMQP_URI),
            host=env.get("GATEWAY_HOST", "127.0.0.1"),
            port=int(env.get("GATEWAY_PORT", "8080")),
            jwt_secret=jwt_secret,
            actor_signing_key=env.get(SIGNING_KEY_ENV, ""),
            access_token_ttl_seconds=int(env.get("ACCESS_TOKEN_TTL_SECONDS", "3600")),
            admin_password=env.get("ADMIN_PASSWORD") or None,
            rpc_timeout_seconds=float(env.get("RPC_TIMEOUT_SECONDS", "10")),
            event_log_retention_hours=float(env.get("EVENT_LOG_RETENTION_HOURS", "168")),
            user_cache_seconds=float(env.get("USER_CACHE_SECONDS", "2")),
            login_hashing_concurrency=int(env.get("LOGIN_HASHING_CONCURRENCY", "2")),
            login_hashing_queue=int(env.get("LOGIN_HASHING_QUEUE", "8")),
            login_max_failures_per_username=int(env.get("LOGIN_MAX_FAILURES_PER_USERNAME", "10")),
            login_max_failures_per_address=int(env.get("LOGIN_MAX_FAILURES_PER_ADDRESS", "100")),
            login_failure_window_seconds=float(env.get("LOGIN_FAILURE_WINDOW_SECONDS", "900")),
            outbox_poll_seconds=float(env.get("OUTBOX_POLL_SECONDS", "1.0")),
            transaction_heartbeat_seconds=heartbeat_seconds_from(env),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            stream_recheck_seconds=float(env.get("STREAM_RECHECK_SECONDS", "2")),
            stream_max_per_user=int(env.get("STREAM_MAX_PER_USER", "5")),
            stream_send_timeout_seconds=float(env.get("STREAM_SEND_TIMEOUT_SECONDS", "10")),
            stream_subscribes_per_minute=int(env.get("STREAM_SUBSCRIBES_PER_MINUTE", "30")),
            rate_limit_per_user=env.get("RATE_LIMIT_PER_USER", "600/minute"),
            rate_limit_per_address=env.get("RATE_LIMIT_PER_ADDRESS", "120/minute"),
            appeal_submissions_per_account=env.get("APPEAL_SUBMISSIONS_PER_ACCOUNT", "10/hour"),
            appeal_submissions_per_device=env.get("APPEAL_SUBMISSIONS_PER_DEVICE", "10/hour"),
            appeal_submissions_per_address=env.get("APPEAL_SUBMISSIONS_PER_ADDRESS", "30/hour"),
            appeal_submissions_per_api_key=env.get("APPEAL_SUBMISSIONS_PER_API_KEY", "1000/hour"),
            import_max_bytes=int(env.get("IMPORT_MAX_BYTES", str(64 * 1024 * 1024))),
            imports_running_per_user=int(env.get("IMPORTS_RUNNING_PER_USER", "3")),
            exports_per_user=env.get("EXPORTS_PER_USER", "60/hour"),
            console_dir=env.get("CONSOLE_DIR") or DEFAULT_CONSOLE_DIR,
        )

    def actor_signer(self) -> ActorSigner:
        """Signs the actor of every RPC (service_kit.actor_tokens); no key, no start: the
        services take no unsigned actor."""
        return ActorSigner.from_config(GATEWAY, {SIGNING_KEY_ENV: self.actor_signing_key})
