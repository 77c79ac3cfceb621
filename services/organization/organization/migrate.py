"""Database preparation: indexes, and the districts the deployment starts with."""

import json
import logging
from importlib import resources

import pymongo

from . import repository

log = logging.getLogger(__name__)


def seed_divisions(db) -> int:
    """Register the bundled districts that are not registered yet (operators add more)."""
    seeds = json.loads(resources.files(__package__).joinpath("divisions.json").read_text("utf-8"))
    added = 0
    for code, name in seeds.items():
        result = db.divisions.update_one(
            {"_id": code}, {"$setOnInsert": {"name": name, "level": "district"}}, upsert=True
        )
        added += int(result.upserted_id is not None)
    return added


def migrate(config: dict) -> None:
    client = pymongo.MongoClient(config["MONGODB_URI"])
    try:
        db = client[config["MONGODB_DATABASE"]]
        repository.ensure_indexes(db)
        added = seed_divisions(db)
        if added:
            log.info("registered %d bundled district(s)", added)
    finally:
        client.close()
