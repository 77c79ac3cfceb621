"""Prefix queries as index ranges, on a real MongoDB wire server."""

import uuid

import pymongo

from service_kit.documents import prefix_query


def test_a_prefix_query_matches_exactly_the_codes_under_the_prefix(mongodb_uri):
    codes = ["37", "3701", "370113", "370113001", "370113001001", "370112", "3702", "370", "4", "371"]
    client = pymongo.MongoClient(mongodb_uri)
    collection = client[f"docs_{uuid.uuid4().hex[:6]}"].codes
    collection.insert_many([{"division": code} for code in codes])
    collection.create_index("division")
    for prefix in ("37", "3701", "370113", "370113001", "3709"):
        found = sorted(d["division"] for d in collection.find({"division": prefix_query(prefix)}))
        assert found == sorted(c for c in codes if c.startswith(prefix)), prefix
    client.drop_database(collection.database.name)
    client.close()
