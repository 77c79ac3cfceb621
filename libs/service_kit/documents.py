"""How services store and page documents: string ids, JSON-ready values, anchored prefix
queries, and `_id` cursors for the contract's `?limit=&cursor=` lists."""

import base64
import re

from bson import ObjectId
from pymongo import ASCENDING

from platform_contracts.problems import Rejected


def new_id() -> str:
    """Sortable by creation, so `_id` order is registration order in lists."""
    return str(ObjectId())


def json_ready(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


def prefix_query(prefix: str) -> dict:
    """Match codes starting with `prefix`; an anchored regex is answered from the index."""
    return {"$regex": f"^{re.escape(prefix)}"}


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise Rejected.invalid(["query", "cursor"], "not a cursor this service issued")


def page(collection, query: dict, limit: int, cursor: str | None, to_resource, session=None) -> dict:
    """One page in `_id` order: {"items": [...], "next_cursor": str | None}."""
    after = decode_cursor(cursor)
    if after:
        query = {"$and": [query, {"_id": {"$gt": after}}]}
    documents = list(collection.find(query, session=session).sort("_id", ASCENDING).limit(limit + 1))
    next_cursor = encode_cursor(documents[limit - 1]["_id"]) if len(documents) > limit else None
    return {"items": [to_resource(d) for d in documents[:limit]], "next_cursor": next_cursor}
