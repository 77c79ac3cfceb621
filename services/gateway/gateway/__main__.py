"""`python -m gateway` serves the API; `python -m gateway migrate` prepares MongoDB and the
broker (indexes, the events queue and its bindings) and exits; `python -m gateway
reset-admin-password` sets the admin account's password (ADMIN_PASSWORD, or the first line of
stdin), makes it an active admin again, revokes its tokens, and exits."""

import asyncio
import logging
import os
import sys

import aio_pika
import uvicorn
from pydantic import TypeAdapter, ValidationError
from pymongo import AsyncMongoClient

from service_kit.exposition import without_created_series

from .app import create_app, ensure_indexes
from .event_consumer import declare_topology
from .login_guard import forgive_username
from .logs import configure as configure_logging
from .schemas import Password
from .settings import Settings
from .users import BOOTSTRAP_ADMIN, UserRepository


async def migrate(settings: Settings) -> None:
    mongo = AsyncMongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        await ensure_indexes(mongo[settings.mongodb_database])
    finally:
        await mongo.close()
    connection = await aio_pika.connect(settings.amqp_uri)
    async with connection:
        await declare_topology(await connection.channel())
    logging.getLogger("gateway").info("indexes and the events queue are in place")


async def reset_admin_password(settings: Settings, password: str) -> None:
    mongo = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        db = mongo[settings.mongodb_database]
        await ensure_indexes(db)
        await UserRepository(db).reset_admin(password)
        await forgive_username(db, BOOTSTRAP_ADMIN)
    finally:
        await mongo.close()


def main(argv: list[str]) -> int:
    without_created_series()  # no <name>_created samples on /metrics (service_kit.exposition)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
    settings = Settings.from_env()
    if argv[:1] == ["migrate"]:
        asyncio.run(migrate(settings))
        return 0
    if argv[:1] == ["reset-admin-password"]:
        password = settings.admin_password or sys.stdin.readline().rstrip("\r\n")
        try:
            TypeAdapter(Password).validate_python(password)  # the API's rules for a password
        except ValidationError as exc:
            print(f"the new password (ADMIN_PASSWORD or stdin): {exc.errors()[0]['msg']}", file=sys.stderr)
            return 2
        asyncio.run(reset_admin_password(settings, password))
        print("admin password reset; running gateways accept it within USER_CACHE_SECONDS", file=sys.stderr)
        return 0
    if argv:
        print("usage: python -m gateway [migrate | reset-admin-password]", file=sys.stderr)
        return 2
    # uvicorn stops on SIGTERM and SIGINT; open SSE streams are ended by sse-starlette,
    # which watches uvicorn's exit flag, and WebSockets are closed by uvicorn itself.
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=10, lifespan="on")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
