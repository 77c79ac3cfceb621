"""Benchmark of the appeal service (issue 14), on the platform as `make run` starts it, beside the
bare cost of the same work measured in the same run (these machines are shared and noisy:
compare ratios, not absolutes).

    .venv/bin/python bench/appeals.py [--quick]

1. Submit -> `appeal.submitted` on SSE at a steady rate (POST /api/v1/appeals, open loop),
   beside a bare paced MongoDB insert and RabbitMQ publish -> consume (bench.run.raw_paced).
2. The nearby-duplicates query with 100,000 open appeals (--quick: 10,000) in Jinan's urban
   districts (about 30 x 25 km): GET /api/v1/appeals/nearby?near=&category= (250 m, 30 days) at
   the gateway, beside what the service asks the database for it (nearby.find_near with the
   same filter), directly.
3. The overdue sweep over the same appeals, all accepted and past their deadline at once: the
   time until every one is flagged (its appeal.overdue and appeal.escalated in the outbox), and
   until the relay has published them, beside the bare cost of writing one field on each of the
   same documents (update_one by _id in transactions of 200, the sweep's batch).

Writes bench/results/appeals-<timestamp>.json."""

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services" / "appeal"))

from appeal import domain  # noqa: E402
from appeal.repository import ensure_indexes  # noqa: E402
from bench.run import ms, open_loop, percentile, raw_paced, sse_latencies  # noqa: E402
from platform_testing import rabbit_vhost, wait_for  # noqa: E402
from service_kit import nearby  # noqa: E402
from tests.harness import RunningPlatform, SseListener  # noqa: E402

WEST, EAST, SOUTH, NORTH = 116.85, 117.20, 36.55, 36.78  # Jinan's urban districts
CATEGORIES = ["hazard", "rights", "housing", "labour_protection", "suggestion"]
SWEEP_BATCH = 200


def figures(samples: list[float], **extra) -> dict:
    return {"runs": len(samples), "p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)),
            **extra}


def point(rng: random.Random) -> tuple[float, float]:
    return round(rng.uniform(WEST, EAST), 6), round(rng.uniform(SOUTH, NORTH), 6)


# ---- 1. submit -> SSE ----------------------------------------------------------------------------

def steady_submissions(platform: RunningPlatform, division: str, rate: float, seconds: float,
                       rng: random.Random) -> dict:
    stream = SseListener(platform, {"types": "appeal.submitted"})
    sent: dict[str, float] = {}
    answered: list[float] = []
    errors: list[str] = []
    clients = threading.local()
    places = [point(rng) for _ in range(int(rate * seconds))]

    def post(index: int):
        if not hasattr(clients, "api"):
            clients.api = platform.client()
        lng, lat = places[index]
        began = time.perf_counter()
        response = clients.api.post("/appeals", json={
            "category": "hazard", "title": "路灯不亮", "description": "夜间送餐路段路灯不亮", "division": division,
            "location": {"lng": lng, "lat": lat}, "submitter": {"kind": "anonymous"}})
        answered.append(time.perf_counter() - began)
        if response.status_code != 201:
            errors.append(response.text[:200])
        else:
            sent[response.json()["id"]] = began

    open_loop(rate, len(places), post, workers=16)
    latencies = sse_latencies(stream, sent, lambda data: data.get("subject"))
    return {"submissions": len(places), "rate_per_s": rate, "errors": len(errors),
            "events_missing": len(sent) - len(latencies),
            "post_to_sse_p50_ms": ms(percentile(latencies, 50)), "post_to_sse_p99_ms": ms(percentile(latencies, 99)),
            "http_response_p50_ms": ms(percentile(answered, 50)), "http_response_p99_ms": ms(percentile(answered, 99))}


# ---- 2. nearby duplicates ------------------------------------------------------------------------

def seed_appeals(db, count: int, department_id: str, division: str, rng: random.Random) -> None:
    """Open appeals as the service stores them (grid cells and indexes included), submitted over
    the last 20 days, accepted and routed to one department."""
    ensure_indexes(db)
    now = datetime.now(timezone.utc)
    for start in range(0, count, 2_000):
        batch = []
        for _ in range(min(2_000, count - start)):
            lng, lat = point(rng)
            appeal = domain.new_appeal(
                {"category": rng.choice(CATEGORIES), "title": "诉求", "description": "基准测试", "division": division,
                 "address": None, "media": [], "public": True, "channel": "api",
                 "submitter": {"kind": "anonymous", "unit_id": None, "member_id": None}, "contact": None,
                 "contact_masked": None, nearby.LOCATION_FIELD: {"type": "Point", "coordinates": [lng, lat]},
                 **nearby.cell_fields(lng, lat)},
                appeal_id=uuid.uuid4().hex[:24], raised_by=None,
                now=now - timedelta(seconds=rng.uniform(0, 20 * 86400)), actor="anonymous")
            appeal.update(status="accepted", department=department_id, sla_working_days=5,
                          clock_started_at=appeal["submitted_at"], due_at=now + timedelta(days=30),
                          overdue_at=now + timedelta(days=30))
            batch.append(appeal)
        db.appeals.insert_many(batch)


def nearby_queries(platform: RunningPlatform, db, runs: int, rng: random.Random) -> dict:
    since = datetime.now(timezone.utc) - timedelta(days=30)
    query = {"status": {"$in": ["submitted", "accepted", "assigned"]}, "submitted_at": {"$gte": since}}
    results = {}
    with platform.client() as api:
        def gateway(lng, lat):
            response = api.get("/appeals/nearby", params={"near": f"{lng},{lat}", "category": "hazard"})
            response.raise_for_status()
            return len(response.json()["items"])

        def bare(lng, lat):
            found = nearby.find_near(db.appeals, lng, lat, 250, 10_000, query, {"contact": 0})
            return len([a for a, _ in found if a["category"] == "hazard"])

        for name, call in (("nearby bare query", bare), ("nearby gateway", gateway)):
            for _ in range(20):
                call(*point(rng))
            samples, found = [], 0
            for _ in range(runs):
                lng, lat = point(rng)
                began = time.perf_counter()
                found += call(lng, lat)
                samples.append(time.perf_counter() - began)
            results[name] = figures(samples, mean_found=round(found / runs, 2))
    return results


# ---- 3. the overdue sweep ------------------------------------------------------------------------

def bare_updates(db, count: int) -> dict:
    """One field written on `count` of the same appeals by _id, in transactions of SWEEP_BATCH."""
    ids = [a["_id"] for a in db.appeals.find({}, {"_id": 1}).limit(count)]
    client = db.client
    began = time.perf_counter()
    for start in range(0, len(ids), SWEEP_BATCH):
        with client.start_session() as session, session.start_transaction():
            for appeal_id in ids[start:start + SWEEP_BATCH]:
                db.appeals.update_one({"_id": appeal_id}, {"$set": {"bench_flag": True}}, session=session)
    seconds = time.perf_counter() - began
    return {"documents": len(ids), "seconds": round(seconds, 2), "per_s": round(len(ids) / seconds)}


def overdue_sweep(platform: RunningPlatform, db, count: int, seeded: int) -> dict:
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    db.appeals.update_many({}, {"$set": {"due_at": past, "overdue_at": past}})
    began = time.perf_counter()
    # The service's own overdue counters, a few documents: a count over the appeals themselves
    # would scan 100,000 documents every poll and slow the very writes it waits for.
    wait_for(lambda: sum(c["count"] for c in db.overdue_counts.find({})) >= seeded, timeout=3 * 3600, interval=2,
             what="every seeded appeal flagged")
    wait_for(lambda: db.appeals.count_documents({"overdue_at": {"$ne": None}}) == 0, timeout=3600, interval=5,
             what="every appeal flagged")
    flagged = time.perf_counter() - began
    wait_for(lambda: db.outbox.count_documents({"published_at": None}) == 0, timeout=3600, interval=2,
             what="the outbox published")
    published = time.perf_counter() - began
    events = db.outbox.count_documents({"type": "appeal.overdue"})
    return {"appeals": count, "flagged_s": round(flagged, 1), "flagged_per_s": round(count / flagged),
            "published_s": round(published, 1), "appeal_overdue_events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 appeals and shorter runs, for a smoke check")
    parser.add_argument("--sweep-only", action="store_true", help="only 3., the overdue sweep (and its bare cost)")
    args = parser.parse_args()
    count, runs, seconds, rate = (10_000, 100, 10, 10) if args.quick else (100_000, 500, 30, 20)
    rng = random.Random(20261207)
    results: dict = {"appeals": count}

    def show(name: str, values: dict):
        results[name] = values
        print(f"{name:20s} " + "  ".join(f"{k}={v}" for k, v in values.items()), flush=True)

    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING",
                                                              "APPEAL_OVERDUE_CHECK_SECONDS": "2"})
        client = pymongo.MongoClient(platform.mongodb_uri, tz_aware=True)
        try:
            db = client[platform.databases["appeal"]]
            with platform.client() as api:
                department = api.post("/departments", json={"name": "济南市城管局", "division": "370102",
                                                             "supervisor": "admin"})
                department.raise_for_status()
                department_id = department.json()["id"]
                api.put("/appeal-routing", json={"category": "hazard", "division": "370102",
                                                 "department_id": department_id}).raise_for_status()
            if not args.sweep_only:
                show("bare paced", raw_paced(amqp_uri, platform.mongodb_uri, rate, int(rate * seconds / 2)))
                show("submit -> SSE", steady_submissions(platform, "370102001", rate, seconds, rng))

            began = time.perf_counter()
            seed_appeals(db, count, department_id, "370102001", rng)
            print(f"seeded {count} appeals in {time.perf_counter() - began:.1f} s", flush=True)
            if not args.sweep_only:
                for name, values in nearby_queries(platform, db, runs, rng).items():
                    show(name, values)

            show("bare updates", bare_updates(db, min(count, 4_000)))
            total = db.appeals.count_documents({})
            show("overdue sweep", overdue_sweep(platform, db, total, count))
            bare_per_s = results["bare updates"]["per_s"]
            results["ratios"] = {"sweep_time_over_bare_update_time": round(
                results["overdue sweep"]["flagged_s"] / (total / bare_per_s), 1)}
            if not args.sweep_only:
                results["ratios"] |= {
                    "submit_sse_p99_over_bare_round_trip_p99": round(
                        results["submit -> SSE"]["post_to_sse_p99_ms"]
                        / max(results["bare paced"]["publish_to_consume_p99_ms"], 0.01), 1),
                    "nearby_gateway_p99_over_bare_p99": round(
                        results["nearby gateway"]["p99_ms"] / max(results["nearby bare query"]["p99_ms"], 0.01), 1),
                }
            print(f"ratios: {results['ratios']}", flush=True)
        finally:
            client.close()
            platform.stop()
    out = ROOT / "bench" / "results" / f"appeals-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
