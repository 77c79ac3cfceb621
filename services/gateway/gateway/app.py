"""The FastAPI application and its lifespan: MongoDB, the RPC client, the event consumer, the
outbox relay that publishes notifications."""

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pymongo import AsyncMongoClient, MongoClient

from service_kit import topology, tracing
from service_kit.pii import FieldCipher
from service_kit.outbox import OutboxRelay
from service_kit.transaction_owners import TransactionOwners

from .appeal_guard import AppealGuard
from .event_consumer import EventConsumer
from .event_log import EventLog, purge_periodically
from .fanout import Broadcaster
from .ledgers.imports import ImportRunner, ImportStore, import_event
from .login_guard import LoginGuard
from .metrics import RequestMiddleware
from .notifications import NOTIFICATION_SOURCE, NotificationStore
from . import open311
from .problems import install as install_problem_handlers
from .routes import appeals, ledgers
from .routes import (admin, coverage, industries, instructors, members, notifications, ops, organizations, stations,
                     stream, transfers, units, users)
from .rate_limit import RateLimitMiddleware
from .rpc import RpcClient
from .settings import Settings
from .tracing import TELEMETRY
from .auth import Principal
from .users import UserRepository

log = logging.getLogger(__name__)


async def ensure_indexes(db) -> None:
    """Idempotent: run at every start and by `python -m gateway migrate`."""
    await UserRepository(db).ensure_indexes()
    await LoginGuard.ensure_indexes(db)
    await EventLog(db).ensure_indexes()
    await NotificationStore(db).ensure_indexes()
    await open311.ensure_indexes(db)
    await AppealGuard.ensure_indexes(db)
    await ImportStore.ensure_indexes(db)


def ledger_imports(app: FastAPI, db, settings: Settings, rpc: RpcClient, users: UserRepository,
                   broadcaster: Broadcaster) -> ImportRunner:
    """Imports run in the background of every replica. Uploads are sealed at rest under a key
    derived from JWT_SECRET (a members ledger holds ID numbers), which every replica shares.
    Progress events are logged by an event log writer of their own, as another replica's would be."""
    secret = settings.jwt_secret.encode()
    store = ImportStore(db, FieldCipher(secret))
    progress_log = EventLog(db)

    async def actor_of(user_id: str):
        account = await users.by_id(user_id)
        return Principal.of(account).actor if account and account.get("active", True) else None

    async def log_event(event_type: str, job: dict) -> None:
        await progress_log.append(import_event(event_type, job, NOTIFICATION_SOURCE))
        broadcaster.notify()

    runner = ImportRunner(store, rpc, actor_of, log_event, command_secret=secret)
    runner.start()
    app.state.imports, app.state.import_runner = store, runner
    return runner


def create_app(settings: Settings) -> FastAPI:
    tracing.configure("gateway")  # before FastAPI, which traces requests on the global provider
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # MongoDB away: a request (authentication reads accounts) gets a 503 in about 2 s, not a hang.
        mongo = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=2_000,
                                 connectTimeoutMS=2_000)
        db = mongo[settings.mongodb_database]
        await ensure_indexes(db)
        users_repo = UserRepository(db, settings.user_cache_seconds)
        await users_repo.bootstrap_admin(settings.admin_password)
        rpc = RpcClient(settings.amqp_uri, settings.rpc_timeout_seconds, settings.actor_signer())
        await rpc.start()
        # The services' relay and transaction heartbeat, unchanged: synchronous, so in threads of
        # their own with a client of their own.
        relay_mongo = MongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
        owners = TransactionOwners(relay_mongo[settings.mongodb_database], settings.transaction_heartbeat_seconds)
        owners.start(lambda run: threading.Thread(target=run, name="transaction-owners", daemon=True).start())
        event_log = EventLog(db, owners)
        broadcaster = Broadcaster(event_log)
        await broadcaster.start()
        notification_store = NotificationStore(db, owners.owner)
        relay = OutboxRelay(NOTIFICATION_SOURCE, settings.amqp_uri, settings.outbox_poll_seconds,
                            refresh_other_gauges=lambda: topology.count_dead_letters(settings.amqp_uri,
                                                                                     NOTIFICATION_SOURCE))
        relay.outbox = relay_mongo[settings.mongodb_database][notification_store.outbox.name]
        relay.other_relays_alive = owners.others_alive
        relay.start(lambda run: threading.Thread(target=run, name="outbox-relay", daemon=True).start())
        consumer = EventConsumer(settings.amqp_uri, event_log, broadcaster, notification_store, relay.committed)
        await consumer.start()
        purger = asyncio.create_task(purge_periodically(event_log, settings.event_log_retention_hours))
        import_runner = ledger_imports(app, db, settings, rpc, users_repo, broadcaster)
        app.state.settings, app.state.db, app.state.users = settings, db, users_repo
        app.state.rpc, app.state.broadcaster, app.state.consumer = rpc, broadcaster, consumer
        app.state.notifications = notification_store
        app.state.login_guard = LoginGuard(db, settings)
        log.info("gateway ready on http://%s:%d (docs at /docs)", settings.host, settings.port)
        try:
            yield
        finally:
            await import_runner.stop()  # a job stopped mid-way resumes from its last batch
            purger.cancel()
            await consumer.stop()
            await asyncio.to_thread(relay.stop)  # marks what it has published
            await asyncio.to_thread(owners.stop)
            relay_mongo.close()
            await broadcaster.stop()
            await rpc.close()
            await mongo.close()
            await asyncio.to_thread(tracing.shutdown)  # what is buffered goes out

    app = FastAPI(
        title="Party-building platform gateway",
        version="1.0.0",
        description="The public API (CONTRACT.md v1). Errors are RFC 9457 application/problem+json. "
                    "Authenticate with POST /api/v1/auth/token and send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        telemetry=TELEMETRY,
    )
    install_problem_handlers(app)
    # Added before RequestMiddleware, which wraps it: a 429 is counted and has a request id.
    app.add_middleware(RateLimitMiddleware, jwt_secret=settings.jwt_secret, per_user=settings.rate_limit_per_user,
                       per_address=settings.rate_limit_per_address)
    app.add_middleware(RequestMiddleware)
    for module in (users, units, organizations, instructors, coverage, members, transfers, stations, notifications,
                   admin, industries, stream, ops, open311):
        app.include_router(module.router)
    app.include_router(appeals.router)
    app.include_router(ledgers.router)
    mount_console(app, Path(settings.console_dir))
    return app


CONSOLE_MISSING = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>控制台未构建</title>
<h1>控制台未构建 (console not built)</h1>
<p>The operator console's files are not in {directory}: run <code>make install</code> (or
<code>bash scripts/ensure_console.sh</code>) to build console/dist, or point CONSOLE_DIR at a build.</p></html>"""


def mount_console(app: FastAPI, directory: Path) -> None:
    """The operator console (console/, a single-page app) at /console/, outside the OpenAPI
    document. Without its build the gateway still serves the API, and /console/ says why not."""
    @app.get("/console", include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse("/console/")

    if (directory / "index.html").is_file():
        app.mount("/console", StaticFiles(directory=directory, html=True), name="console")
        return
    log.warning("no operator console in %s: /console/ answers 503 (make builds console/dist)", directory)

    @app.get("/console/{path:path}", include_in_schema=False)
    async def console_missing(path: str) -> HTMLResponse:
        return HTMLResponse(CONSOLE_MISSING.format(directory=directory), status_code=503)
