"""Benchmarks of the platform as `make run` starts it, beside the raw cost of the same work
measured in the same run (these machines are shared and noisy: compare ratios, not absolutes).

    make bench                    # or: .venv/bin/python bench/run.py [--quick]

Prints a table and writes bench/results/<timestamp>.json."""

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymongo
from kombu import Connection, Exchange, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import seed_units  # noqa: E402
from platform_testing import credit_code, rabbit_vhost  # noqa: E402
from tests.harness import RunningPlatform, SseListener  # noqa: E402

DIVISIONS = ["370113", "370112", "370102", "370211"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def unit_body(division: str) -> dict:
    street = f"{division}{random.randrange(1, 20):03d}{random.randrange(1, 30):03d}"
    return {"credit_code": credit_code(division), "name": f"bench-{uuid.uuid4().hex[:8]}",
            "type": random.choice(["enterprise", "social_organization", "platform_company", "market"]),
            "industry": random.choice(["express", "food_delivery", "ride_hailing", "retail", "software"]),
            "division": street}


# ---- raw costs ---------------------------------------------------------------------------------

def publish_and_consume(connection, producer, received: list[float], body, routing_key: str) -> float:
    """Seconds from a confirmed publish until the consumer, whose callback appends its arrival
    time to `received`, has the message."""
    before = len(received)  # the confirm wait may already deliver it
    sent = time.perf_counter()
    producer.publish(body, routing_key=routing_key, content_type="application/json")
    while len(received) == before:
        connection.drain_events(timeout=10)
    return received[-1] - sent


def raw_rabbitmq(amqp_uri: str, count: int) -> dict:
    exchange = Exchange("bench.raw", "topic", durable=True, auto_delete=True)
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        queue = Queue(f"bench-raw-{uuid.uuid4().hex[:6]}", exchange=exchange, routing_key="#", auto_delete=True)
        queue(channel).declare()
        producer = connection.Producer(channel, exchange=exchange)
        body = json.dumps({"specversion": "1.0", "id": "x" * 32, "data": {"k": "v" * 400}})
        started = time.perf_counter()
        for _ in range(count):
            producer.publish(body, routing_key="bench.raw", content_type="application/json")
        confirmed_rate = count / (time.perf_counter() - started)

        received = []
        consumer_channel = connection.channel()

        def on_message(_, message):
            received.append(time.perf_counter())
            message.ack()

        with connection.Consumer(queues=[queue], channel=consumer_channel, callbacks=[on_message], prefetch_count=200):
            started = time.perf_counter()
            while len(received) < count:
                connection.drain_events(timeout=10)
            consume_rate = count / (time.perf_counter() - started)

            latencies = [publish_and_consume(connection, producer, received, body, "bench.raw") for _ in range(300)]
    return {"publish_confirmed_per_s": round(confirmed_rate), "consume_ack_per_s": round(consume_rate),
            "publish_to_consume_p50_ms": ms(percentile(latencies, 50)),
            "publish_to_consume_p99_ms": ms(percentile(latencies, 99))}


def raw_mongodb(uri: str, count: int) -> dict:
    """Bare MongoDB costs of what a command does: single inserts, a small transaction (an
    insert and an update by id, as a command's state and counter), a batch insert, and an
    indexed read."""
    client = pymongo.MongoClient(uri)
    collection = client[f"bench_raw_{uuid.uuid4().hex[:6]}"].writes
    collection.create_index("n")
    collection.insert_one({"_id": "counter", "c": 0})
    document = {"name": "x" * 200, "division": "370113001001", "n": 0}
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        collection.insert_one({**document, "n": i})
        latencies.append(time.perf_counter() - t)
    single_rate = count / (time.perf_counter() - started)
    transactions = []
    for i in range(count // 4):
        t = time.perf_counter()
        with client.start_session() as session:
            with session.start_transaction():
                collection.insert_one({**document, "n": -i}, session=session)
                collection.update_one({"_id": "counter"}, {"$inc": {"c": 1}}, session=session)
        transactions.append(time.perf_counter() - t)
    started = time.perf_counter()
    collection.insert_many([{**document, "n": i} for i in range(count * 5)])
    batch_rate = count * 5 / (time.perf_counter() - started)
    reads = []
    for i in range(count):
        t = time.perf_counter()
        collection.find_one({"n": i % 50})
        reads.append(time.perf_counter() - t)
    client.drop_database(collection.database.name)
    client.close()
    return {"insert_one_per_s": round(single_rate), "insert_one_p50_ms": ms(percentile(latencies, 50)),
            "insert_one_p99_ms": ms(percentile(latencies, 99)),
            "transaction_2_writes_per_s": round(len(transactions) / sum(transactions)),
            "transaction_2_writes_p50_ms": ms(percentile(transactions, 50)),
            "insert_many_docs_per_s": round(batch_rate), "indexed_find_p50_ms": ms(percentile(reads, 50)),
            "indexed_find_p99_ms": ms(percentile(reads, 99))}


def raw_paced(amqp_uri: str, mongodb_uri: str, rate: float, count: int) -> dict:
    """The bare costs once more, one of each per tick at `rate`, as the steady runs send their
    commands. On these virtual machines an operation that follows idle time costs several
    times what one in a tight loop does (the CPUs wake from idle), so this, not the tight-loop
    figure, is what a paced POST -> SSE latency compares with."""
    exchange = Exchange("bench.paced", "topic", durable=True, auto_delete=True)
    collection = pymongo.MongoClient(mongodb_uri)[f"bench_paced_{uuid.uuid4().hex[:6]}"].writes
    collection.insert_one({"warm": True})
    document = {"name": "x" * 200, "division": "370113001001"}
    inserts, round_trips = [], []
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        queue = Queue(f"bench-paced-{uuid.uuid4().hex[:6]}", exchange=exchange, routing_key="#", auto_delete=True)
        queue(channel).declare()
        producer = connection.Producer(channel, exchange=exchange)
        received = []
        with connection.Consumer(queues=[queue], channel=connection.channel(), prefetch_count=10,
                                 callbacks=[lambda _, message: (received.append(time.perf_counter()), message.ack())]):
            started = time.perf_counter()
            for index in range(count):
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t = time.perf_counter()
                collection.insert_one(dict(document))
                inserts.append(time.perf_counter() - t)
                round_trips.append(publish_and_consume(connection, producer, received, json.dumps({"n": index}), "bench.paced"))
    collection.database.client.drop_database(collection.database.name)
    collection.database.client.close()
    return {"rate_per_s": rate, "insert_one_p50_ms": ms(percentile(inserts, 50)),
            "insert_one_p99_ms": ms(percentile(inserts, 99)),
            "publish_to_consume_p50_ms": ms(percentile(round_trips, 50)),
            "publish_to_consume_p99_ms": ms(percentile(round_trips, 99))}


# ---- the platform ------------------------------------------------------------------------------

def open_loop(rate: float, total: int, send, workers: int = 32) -> None:
    """Call `send(index)` `total` times at `rate` per second from a pool, each at its scheduled
    moment whether or not the ones before have been answered (an open loop)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, index)


def sse_latencies(stream: SseListener, sent: dict[str, float], key_of, timeout: float = 30) -> list[float]:
    """Seconds from each send (`sent`: key -> perf_counter at sending) until the first event on
    `stream` whose `key_of(event data)` is that key; waits up to `timeout` for all of them, then
    closes the stream."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and not set(sent) <= {key_of(e["data"]) for e in stream.events}:
        time.sleep(0.1)
    stream.close()
    first_seen: dict[str, float] = {}
    for event in stream.events:
        key = key_of(event["data"])
        if key in sent and key not in first_seen:
            first_seen[key] = stream.received_at[event["data"]["id"]]
    return [first_seen[k] - sent[k] for k in first_seen]


def steady_latency(platform: RunningPlatform, rate: float, seconds: float) -> dict:
    """POST /units at a fixed rate (open loop); time until its coverage.changed is on SSE."""
    stream = SseListener(platform, {"types": "coverage.changed"})
    sent: dict[str, float] = {}
    answered: list[float] = []
    errors: list[str] = []
    clients = threading.local()

    def post(_index: int):
        if not hasattr(clients, "api"):
            clients.api = platform.client()
        key = uuid.uuid4().hex
        sent[f"admin:{key}"] = time.perf_counter()
        response = clients.api.post("/units", json=unit_body(random.choice(DIVISIONS)),
                                    headers={"Idempotency-Key": key})
        answered.append(time.perf_counter() - sent[f"admin:{key}"])
        if response.status_code != 201:
            errors.append(response.text[:200])

    total = int(rate * seconds)
    open_loop(rate, total, post)
    latencies = sse_latencies(stream, sent, lambda data: data.get("correlationid"))
    return {"commands": total, "rate_per_s": rate, "errors": len(errors),
            "events_missing": total - len(latencies),
            "post_to_sse_p50_ms": ms(percentile(latencies, 50)), "post_to_sse_p99_ms": ms(percentile(latencies, 99)),
            "http_response_p50_ms": ms(percentile(answered, 50)), "http_response_p99_ms": ms(percentile(answered, 99))}


def sustained_commands(platform: RunningPlatform, concurrency: int, seconds: float) -> dict:
    done: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def worker():
        with platform.client() as api:
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                response = api.post("/units", json=unit_body(random.choice(DIVISIONS)))
                if response.status_code == 201:
                    done.append(time.perf_counter() - t)
                else:
                    errors.append(response.text[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "commands_per_s": round(len(done) / elapsed, 1), "errors": len(errors),
            "latency_p50_ms": ms(percentile(done, 50)), "latency_p99_ms": ms(percentile(done, 99))}


def bulk_registration(platform: RunningPlatform, batches: int, batch_size: int) -> dict:
    with platform.client() as api:
        api.timeout = httpx.Timeout(120)
        started = time.perf_counter()
        for _ in range(batches):
            response = api.post("/units/bulk", json={"units": [unit_body(random.choice(DIVISIONS))
                                                               for _ in range(batch_size)]})
            response.raise_for_status()
        elapsed = time.perf_counter() - started
    return {"units": batches * batch_size, "batch_size": batch_size,
            "units_per_s": round(batches * batch_size / elapsed)}


def wait_for_outbox_drained(platform: RunningPlatform, timeout: float = 600) -> float:
    """Seconds until every event is published: queries are then measured on a quiet platform."""
    started = time.perf_counter()
    url = f"http://{platform.metrics_targets['organization']}/metrics"
    while time.perf_counter() - started < timeout:
        text = httpx.get(url).text
        pending = [line for line in text.splitlines() if line.startswith("outbox_pending_events{")]
        if pending and float(pending[0].split()[-1]) == 0:
            return round(time.perf_counter() - started, 1)
        time.sleep(1)
    return float("nan")


def coverage_queries(platform: RunningPlatform, mongodb_uri: str, count: int) -> dict:
    """GET /coverage through the gateway, each beside a bare read of the same counter document
    from MongoDB: what the query costs on top of the database, measured under the same noise.
    A warm-up first, so the seeding's after-effects (checkpoints) are not counted."""
    filters = [{"division": "370113"}, {"division": "37"}, {"division": "370113005"}, {},
               {"division": "3701", "industry": "express"}, {"division": "370211", "type": "market"}]
    counters = pymongo.MongoClient(mongodb_uri)[platform.organization_database].coverage_counters
    latencies, raw = [], []
    with platform.client() as api:
        for _ in range(200):
            api.get("/coverage", params=filters[0]).raise_for_status()
        for i in range(count):
            query = filters[i % len(filters)]
            t = time.perf_counter()
            counters.find_one({"_id": query.get("division", "*")})
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            response = api.get("/coverage", params=query)
            latencies.append(time.perf_counter() - t)
            response.raise_for_status()
        units = api.get("/coverage").json()["units"]
    counters.database.client.close()
    return {"units_loaded": units, "queries": count, "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)), "max_ms": ms(max(latencies)),
            "raw_find_p50_ms": ms(percentile(raw, 50)), "raw_find_p99_ms": ms(percentile(raw, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    args = parser.parse_args()
    quick = args.quick
    results: dict = {"started": datetime.now(timezone.utc).isoformat(), "quick": quick}

    def show(name: str, figures: dict):
        results[name] = figures
        print(f"{name:28s} " + "  ".join(f"{k}={v}" for k, v in figures.items()), flush=True)

    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        # Reconciling 230,000 units takes longer than the API's default RPC timeout.
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING", "RPC_TIMEOUT_SECONDS": "600"})
        try:
            mongodb_uri = f"mongodb://127.0.0.1:{platform.secantus_port}/?directConnection=true"
            show("raw rabbitmq", raw_rabbitmq(amqp_uri, 1000 if quick else 3000))
            show("raw mongodb", raw_mongodb(mongodb_uri, 300 if quick else 1000))
            for rate in (50, 10):
                show(f"raw paced @{rate}/s", raw_paced(amqp_uri, mongodb_uri, rate, 100 if quick else 200))
                show(f"post->sse @{rate}/s", steady_latency(platform, rate, 8 if quick else 30))
            show("sustained commands", sustained_commands(platform, 8, 8 if quick else 20))
            show("bulk registration", bulk_registration(platform, 4 if quick else 20, 500))
            show("outbox drained", {"seconds": wait_for_outbox_drained(platform)})
            targets = [23_000, 115_000, 230_000] if not quick else [5_000, 20_000]
            for target in targets:
                seed_units(mongodb_uri, platform.organization_database, target)
                show(f"coverage query @{target // 1000}k", coverage_queries(platform, mongodb_uri, 500 if quick else 2000))
            show("reconcile @max", reconcile_time(platform))
        finally:
            platform.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {path}")


def reconcile_time(platform: RunningPlatform) -> dict:
    """One run over every unit: its report carries `seconds` and `longest_transaction_seconds`
    (each district is reconciled in a transaction of its own); `wall_seconds` adds the RPC."""
    with platform.client() as api:
        api.timeout = httpx.Timeout(600)
        started = time.perf_counter()
        report = api.post("/coverage/reconcile").json()
        return {"wall_seconds": round(time.perf_counter() - started, 2), **report}


if __name__ == "__main__":
    main()
