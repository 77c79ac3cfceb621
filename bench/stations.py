"""Benchmark of the nearest open station (issue 13): `GET /api/v1/stations?near=&open_now=true`
at the gateway of the platform as `make run` starts it, beside the bare indexed database query
the service makes for it and the `$geoNear` it does not use, on the same data in the same run
(these machines are shared and noisy: compare ratios, not absolutes).

    .venv/bin/python bench/stations.py [--quick]

50,000 stations (--quick: 5,000) spread uniformly over Shandong (lng 114.8-122.7, lat
34.4-38.4), a third of them closed now (opening hours `off`) and half with charging, stored in
the service-station service's database as its use cases store them (open intervals, grid
cells, indexes); then, from random points in Shandong, sequentially:

* gateway: GET /stations?near=LNG,LAT&radius_m=3000&open_now=true&amenity=charging&limit=10
  (authentication, rate limit, RPC, the service, JSON);
* bare query: what the service asks SecantusDB for the same search (nearby.find_near with the
  same filter: the cell lookup, the filter on the candidates, the exact distances), directly;
* $geoNear (3 km, the same filter, limit 10): a few runs, SecantusDB scans for it.

Targets (issue 13): gateway p99 <= 20 ms and within 3x the bare query's p99.
Writes bench/results/stations-<timestamp>.json."""

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services" / "service-station"))

from bench.run import ms, percentile  # noqa: E402
from platform_contracts.geo import geojson_point  # noqa: E402
from platform_testing import rabbit_vhost, wait_for  # noqa: E402
from service_kit import nearby  # noqa: E402
from service_kit.china_calendar import ChinaCalendar  # noqa: E402
from service_station import domain, intervals  # noqa: E402
from service_station.repository import ensure_indexes, station_query  # noqa: E402
from tests.harness import RunningPlatform  # noqa: E402

WEST, EAST, SOUTH, NORTH = 114.8, 122.7, 34.4, 38.4
RADIUS_M = 3000


def seed_stations(db, count: int, rng: random.Random) -> None:
    calendar, now = ChinaCalendar(), datetime.now(timezone.utc)
    spans = {hours: intervals.compute(hours, now, calendar) for hours in ("24/7", "off")}
    ensure_indexes(db)
    batch = []
    for i in range(count):
        lng, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
        hours = "off" if i % 3 == 0 else "24/7"
        station = domain.new_station({
            "kind": "warm_station", "name": f"驿站 {i}", "division": "370113001", "address": "山东",
            "amenities": ["water", "charging"] if i % 2 else ["water"], "capacity": 10, "manager": None,
            "opening_hours": hours, "status": "active",
            "location": geojson_point(lng, lat), **nearby.cell_fields(lng, lat)},
            station_id=f"bench{i:06d}", by="bench", now=now)
        station["open_intervals"], station["intervals_from"] = spans[hours]
        batch.append(station)
        if len(batch) == 1000:
            db.stations.insert_many(batch)
            batch = []
    if batch:
        db.stations.insert_many(batch)


def points(rng: random.Random, n: int) -> list[tuple[float, float]]:
    return [(rng.uniform(WEST + 0.2, EAST - 0.2), rng.uniform(SOUTH + 0.2, NORTH - 0.2)) for _ in range(n)]


def figures(samples: list[float], **extra) -> dict:
    return {"runs": len(samples), "p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)),
            **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 stations and fewer runs, for a smoke check")
    args = parser.parse_args()
    count, runs = (5_000, 100) if args.quick else (50_000, 500)
    rng = random.Random(20261207)
    results: dict = {"stations": count, "radius_m": RADIUS_M}

    def show(name: str, values: dict):
        results[name] = values
        print(f"{name:14s} " + "  ".join(f"{k}={v}" for k, v in values.items()), flush=True)

    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING"})
        client = pymongo.MongoClient(platform.mongodb_uri, tz_aware=True)
        try:
            db = client[platform.databases["service-station"]]
            began = time.perf_counter()
            seed_stations(db, count, rng)
            print(f"seeded {count} stations in {time.perf_counter() - began:.1f} s", flush=True)
            now = datetime.now(timezone.utc)
            query = station_query({"amenity": ["charging"]}, now)

            with platform.client() as api:
                def gateway(lng, lat):
                    response = api.get("/stations", params={"near": f"{lng},{lat}", "radius_m": RADIUS_M,
                                                            "open_now": "true", "amenity": "charging", "limit": 10})
                    response.raise_for_status()
                    return len(response.json()["items"])

                def bare(lng, lat):
                    return len(nearby.find_near(db.stations, lng, lat, RADIUS_M, 10, query))

                wait_for(lambda: gateway(117.0, 36.6) >= 0, what="the stations API")
                for name, call in (("bare query", bare), ("gateway", gateway)):
                    for lng, lat in points(rng, 20):  # warm up
                        call(lng, lat)
                    samples, found = [], 0
                    for lng, lat in points(rng, runs):
                        began = time.perf_counter()
                        found += call(lng, lat)
                        samples.append(time.perf_counter() - began)
                    show(name, figures(samples, mean_found=round(found / runs, 2)))

            geo_samples = []
            for lng, lat in points(rng, 3):
                began = time.perf_counter()
                list(db.stations.aggregate([
                    {"$geoNear": {"near": geojson_point(lng, lat), "distanceField": "distance_m",
                                  "maxDistance": RADIUS_M, "spherical": True, "query": query}},
                    {"$limit": 10}]))
                geo_samples.append(time.perf_counter() - began)
            show("$geoNear", figures(geo_samples))
            results["targets"] = {"gateway_p99_le_20ms": results["gateway"]["p99_ms"] <= 20,
                                  "gateway_p99_within_3x_bare": results["gateway"]["p99_ms"]
                                  <= 3 * results["bare query"]["p99_ms"]}
            print(f"targets: {results['targets']}", flush=True)
        finally:
            client.close()
            platform.stop()
    out = ROOT / "bench" / "results" / f"stations-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
