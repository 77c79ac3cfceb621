"""Database preparation: the member service's indexes (the blind index's unique one among them)."""

import pymongo

from . import repository


def migrate(config: dict) -> None:
    client = pymongo.MongoClient(config["MONGODB_URI"])
    try:
        repository.ensure_indexes(client[config["MONGODB_DATABASE"]])
    finally:
        client.close()
