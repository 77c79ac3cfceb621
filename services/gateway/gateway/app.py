"""The FastAPI application and its lifespan: MongoDB, the RPC client, the event consumer."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from .events import Broadcaster, EventConsumer, EventLog, purge_periodically
from .metrics import MetricsMiddleware
from .notifications import NotificationStore
from .problems import install as install_problem_handlers
from .routes import (admin, coverage, instructors, members, notifications, ops, organizations, stream, transfers,
                     units, users)
from .rpc import RpcClient
from .settings import Settings
from .users import UserRepository

log = logging.getLogger(__name__)


async def ensure_indexes(db) -> None:
    """Idempotent: run at every start and by `python -m gateway migrate`."""
    await UserRepository(db).ensure_indexes()
    await EventLog(db).ensure_indexes()
    await NotificationStore(db).ensure_indexes()


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
        db = mongo[settings.mongodb_database]
        await ensure_indexes(db)
        users_repo = UserRepository(db, settings.user_cache_seconds)
        await users_repo.bootstrap_admin(settings.admin_password)
        rpc = RpcClient(settings.amqp_uri, settings.rpc_timeout_seconds)
        await rpc.start()
        event_log = EventLog(db)
        broadcaster = Broadcaster(event_log)
        await broadcaster.start()
        notification_store = NotificationStore(db)
        consumer = EventConsumer(settings.amqp_uri, event_log, broadcaster, notification_store)
        await consumer.start()
        purger = asyncio.create_task(purge_periodically(event_log, settings.event_log_retention_hours))
        app.state.settings, app.state.db, app.state.users = settings, db, users_repo
        app.state.rpc, app.state.broadcaster, app.state.consumer = rpc, broadcaster, consumer
        app.state.notifications = notification_store
        log.info("gateway ready on http://%s:%d (docs at /docs)", settings.host, settings.port)
        try:
            yield
        finally:
            purger.cancel()
            await consumer.stop()
            await broadcaster.stop()
            await rpc.close()
            await mongo.close()

    app = FastAPI(
        title="Party-building platform gateway",
        version="1.0.0",
        description="The public API (CONTRACT.md v1). Errors are RFC 9457 application/problem+json. "
                    "Authenticate with POST /api/v1/auth/token and send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware)
    for module in (users, units, organizations, instructors, coverage, members, transfers, notifications, admin,
                   stream, ops):
        app.include_router(module.router)
    return app
