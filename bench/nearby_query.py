"""Benchmark of the nearby search (service_kit.nearby) on SecantusDB, beside the raw cost of an
indexed find and the `$geoNear` it replaces, measured in the same run (these machines are
shared and noisy: compare ratios, not absolutes).

    .venv/bin/python bench/nearby_query.py [--quick]     # MONGODB_URI=... to use another server

50,000 points spread uniformly over Shandong (lng 114.8-122.7, lat 34.4-38.4), with their cell
fields and the indexes `nearby.ensure_indexes` makes, inserted in batches of 1,000 into a fresh
database on a fresh SecantusDB. Then, at random centres in Shandong:

* near: near_filter + rank (limit 10) with find, at 3 km and 10 km;
* near+query: the same with a caller's condition (`status: active`), through near_pipeline's
  two `$match` stages (find_near), as the services search;
* raw indexed find: all documents of one precision-5 cell by its index (the bare cost of what a
  near search does once per cell);
* $geoNear (3 km, limit 10) and near_filter `$and` the condition in one find (what SecantusDB
  scans): a few runs only, they scan the collection.

Prints one line per measurement and writes bench/results/nearby-<timestamp>.json."""

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platform_contracts.geo import geojson_point  # noqa: E402
from platform_testing import mongodb_server  # noqa: E402
from bench.run import ms, percentile  # noqa: E402
from service_kit import nearby  # noqa: E402

WEST, EAST, SOUTH, NORTH = 114.8, 122.7, 34.4, 38.4


def timings(samples: list[float], **extra) -> dict:
    return {"runs": len(samples), "p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)),
            "max_ms": ms(max(samples)), **extra}


def centre(rng: random.Random) -> tuple[float, float]:
    # Away from the edges of the data, so every circle is full of points.
    return rng.uniform(WEST + 0.5, EAST - 0.5), rng.uniform(SOUTH + 0.5, NORTH - 0.5)


def load(collection, count: int, rng: random.Random) -> dict:
    nearby.ensure_indexes(collection)
    started = time.perf_counter()
    for start in range(0, count, 1_000):
        batch = []
        for i in range(start, min(count, start + 1_000)):
            lng, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
            batch.append({"_id": f"s{i:06d}", "status": "active" if i % 4 else "closed",
                          nearby.LOCATION_FIELD: geojson_point(lng, lat), **nearby.cell_fields(lng, lat)})
        collection.insert_many(batch)
    seconds = time.perf_counter() - started
    return {"points": count, "insert_docs_per_s": round(count / seconds), "seconds": round(seconds, 1)}


def near_queries(collection, radius: int, runs: int, rng: random.Random) -> dict:
    samples, cells, candidates, found = [], [], [], []
    for _ in range(runs):
        lng, lat = centre(rng)
        started = time.perf_counter()
        fragment = nearby.near_filter(lng, lat, radius)
        documents = list(collection.find(fragment))
        ranked = nearby.rank(documents, lng, lat, radius, 10)
        samples.append(time.perf_counter() - started)
        (condition,) = fragment.values()
        cells.append(len(condition["$in"]))
        candidates.append(len(documents))
        found.append(len(ranked))
    return timings(samples, cells_mean=round(statistics.mean(cells), 1),
                   candidates_mean=round(statistics.mean(candidates), 1), found_mean=round(statistics.mean(found), 1))


def near_with_query(collection, radius: int, runs: int, rng: random.Random) -> dict:
    samples = []
    for _ in range(runs):
        lng, lat = centre(rng)
        started = time.perf_counter()
        nearby.find_near(collection, lng, lat, radius, 10, {"$and": [{"status": "active"}]})
        samples.append(time.perf_counter() - started)
    return timings(samples)


def raw_cell_finds(collection, runs: int, rng: random.Random) -> dict:
    samples, sizes = [], []
    for _ in range(runs):
        lng, lat = centre(rng)
        value = nearby.cell_fields(lng, lat)[nearby.CELLS_FIELD]["g5"]
        started = time.perf_counter()
        documents = list(collection.find({nearby.cell_field(5): value}))
        samples.append(time.perf_counter() - started)
        sizes.append(len(documents))
    return timings(samples, documents_mean=round(statistics.mean(sizes), 1))


def geo_near(collection, radius: int, runs: int, rng: random.Random) -> dict:
    samples, agrees = [], True
    for _ in range(runs):
        lng, lat = centre(rng)
        started = time.perf_counter()
        found = list(collection.aggregate([
            {"$geoNear": {"near": geojson_point(lng, lat), "distanceField": "distance_m", "maxDistance": radius,
                          "spherical": True}},
            {"$limit": 10}]))
        samples.append(time.perf_counter() - started)
        ours = nearby.rank(collection.find(nearby.near_filter(lng, lat, radius)), lng, lat, radius, 10)
        agrees &= [d["_id"] for d in found] == [d["_id"] for d, _ in ours]
    return timings(samples, same_answer=agrees)


def anded_find(collection, radius: int, runs: int, rng: random.Random) -> dict:
    samples = []
    for _ in range(runs):
        lng, lat = centre(rng)
        started = time.perf_counter()
        list(collection.find({"$and": [nearby.near_filter(lng, lat, radius), {"status": "active"}]}))
        samples.append(time.perf_counter() - started)
    return timings(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 points and fewer queries, for a smoke check")
    args = parser.parse_args()
    count, runs, slow_runs = (10_000, 100, 2) if args.quick else (50_000, 500, 3)
    rng = random.Random(2026)
    results: dict = {"started": datetime.now(timezone.utc).isoformat(), "quick": args.quick,
                     "server": "MONGODB_URI" if os.environ.get("MONGODB_URI") else "SecantusDB (fresh)"}

    def show(name: str, figures: dict):
        results[name] = figures
        print(f"{name:26s} " + "  ".join(f"{k}={v}" for k, v in figures.items()), flush=True)

    with mongodb_server() as uri, contextlib.closing(pymongo.MongoClient(uri)) as client:
        database = client[f"bench_nearby_{uuid.uuid4().hex[:6]}"]
        try:
            collection = database.points
            show("load", load(collection, count, rng))
            for _ in range(20):  # warm up
                nearby.rank(collection.find(nearby.near_filter(*centre(rng), 3_000)), 117.0, 36.6, 3_000, 10)
            show("raw indexed find (1 cell)", raw_cell_finds(collection, runs, rng))
            for radius in (3_000, 10_000):
                show(f"near {radius // 1000} km", near_queries(collection, radius, runs, rng))
                show(f"near+query {radius // 1000} km", near_with_query(collection, radius, runs, rng))
            show("$geoNear 3 km", geo_near(collection, 3_000, slow_runs, rng))
            show("near $and query 3 km (find)", anded_find(collection, 3_000, slow_runs, rng))
        finally:
            client.drop_database(database.name)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"nearby-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
