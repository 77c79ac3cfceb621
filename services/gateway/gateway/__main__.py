"""`python -m gateway` serves the API; `python -m gateway migrate` prepares MongoDB and the
broker (indexes, the events queue and its bindings) and exits."""

import asyncio
import logging
import os
import sys

import aio_pika
import uvicorn
from pymongo import AsyncMongoClient

from .app import create_app, ensure_indexes
from .event_consumer import declare_topology
from .logs import configure as configure_logging
from .settings import Settings


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


def main(argv: list[str]) -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
    settings = Settings.from_env()
    if argv[:1] == ["migrate"]:
        asyncio.run(migrate(settings))
        return 0
    if argv:
        print("usage: python -m gateway [migrate]", file=sys.stderr)
        return 2
    # uvicorn stops on SIGTERM and SIGINT; open SSE streams are ended by sse-starlette,
    # which watches uvicorn's exit flag, and WebSockets are closed by uvicorn itself.
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=10, lifespan="on")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
