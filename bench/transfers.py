"""Benchmark of transfers of organizational relationship (组织关系转接) end to end, beside the
raw cost of the broker and the database measured in the same run (these machines are shared
and noisy: compare ratios, not absolutes).

    .venv/bin/python bench/transfers.py [--quick]

N members, each one of exactly 3 full members of its own unit in Changqing (370113), get a
transfer to one unit in Licheng (370112), requested, approved and received beforehand. Then
every transfer is reported in — once as fast as a few clients are answered (closed loop: the
throughput, with the queueing a burst brings), once at a steady 10 per second (the latency
without it) — and the benchmark measures

* transfers completed per second end to end: from the first report-in POST until the last
  `transfer.completed` is on an SSE client;
* the latency from each report-in POST until the `coverage.changed` it causes is on an SSE
  client. Each completion leaves its sending unit with 2 full members, so the unit no longer
  should establish an organization and the street's coverage changes: every report-in causes
  a `coverage.changed`. They are matched by id, not by time: report-in → the transfer id →
  the `transfer.completed` whose `subject` is that id → the `coverage.changed` whose
  `causationid` is that event's id (and whose `data.cause` is "transfer.completed")."""

import argparse
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import ms, percentile, raw_mongodb, raw_rabbitmq  # noqa: E402
from platform_testing import rabbit_vhost, wait_for  # noqa: E402
from tests.harness import RunningPlatform, SseListener  # noqa: E402
from tests.test_e2e_transfers import created, full_member, ok, unit_body  # noqa: E402

SENDING_DIVISION = "370113301"  # a street of Changqing
RECEIVING_DIVISION = "370112301"  # a street of Licheng
UNITS_PER_JOINT_BRANCH = 3  # JOINT_ORGANIZATION_MAX_UNITS as RunningPlatform sets it
FULL_MEMBERS_PER_UNIT = 3  # should establish; one member fewer and it no longer should
SETUP_THREADS = 8


def _joint_branch(api: httpx.Client, division: str, unit_ids: list[str]) -> dict:
    return created(api.post("/organizations", json={
        "name": f"联合支部{uuid.uuid4().hex[:4]}", "kind": "joint_branch", "formation": "joint",
        "division": division, "unit_ids": unit_ids, "secretary": "李书记"}))


def _units(api: httpx.Client, division: str) -> dict[str, dict]:
    units, cursor = {}, None
    while True:
        params = {"division": division, "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = ok(api.get("/units", params=params))
        units.update({u["id"]: u for u in page["items"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return units


def prepare(platform: RunningPlatform, count: int) -> list[dict]:
    """`count` received transfers, each of a member whose unit has exactly 3 full members."""
    local = threading.local()

    def api() -> httpx.Client:
        if not hasattr(local, "api"):
            local.api = platform.client()
            local.api.timeout = httpx.Timeout(60)
        return local.api

    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        sending_units = list(pool.map(lambda _: created(api().post("/units", json=unit_body(SENDING_DIVISION))),
                                      range(count)))
        groups = [sending_units[i:i + UNITS_PER_JOINT_BRANCH]
                  for i in range(0, count, UNITS_PER_JOINT_BRANCH)]
        branches = list(pool.map(lambda g: _joint_branch(api(), SENDING_DIVISION, [u["id"] for u in g]), groups))
        homes = [(branch, unit) for branch, group in zip(branches, groups) for unit in group]
        receiving_unit = created(api().post("/units", json=unit_body(RECEIVING_DIVISION)))
        receiving = _joint_branch(api(), RECEIVING_DIVISION, [receiving_unit["id"]])

        members = list(pool.map(lambda home: full_member(api(), *home),
                                [home for home in homes for _ in range(FULL_MEMBERS_PER_UNIT)]))
        moving = members[::FULL_MEMBERS_PER_UNIT]  # one member of each unit

        # The organization service has counted them: every sending unit should establish.
        ids = {u["id"] for u in sending_units}
        wait_for(lambda: all(u["full_members"] == FULL_MEMBERS_PER_UNIT and u["should_establish"]
                             for uid, u in _units(api(), SENDING_DIVISION).items() if uid in ids),
                 timeout=300, interval=1, what="every sending unit counted")

        def received(member: dict) -> dict:
            transfer = created(api().post("/transfers", json={
                "member_id": member["id"], "to_organization_id": receiving["id"],
                "to_unit_id": receiving_unit["id"], "reason": "工作调动到历城区"}))
            ok(api().post(f"/transfers/{transfer['id']}/approve", json={}))
            return ok(api().post(f"/transfers/{transfer['id']}/receive"))

        transfers = list(pool.map(received, moving))
    assert all(t["status"] == "received" for t in transfers)
    return transfers


def transfer_benchmark(platform: RunningPlatform, count: int, concurrency: int = 8, rate: float | None = None) -> dict:
    """Report in `count` prepared transfers from `concurrency` clients: as fast as they are
    answered (closed loop), or at a steady `rate` per second (each client keeps its share of
    the schedule), which shows the latency without the queueing a burst causes."""
    transfers = prepare(platform, count)
    stream = SseListener(platform, {"types": "transfer.completed,coverage.changed"})
    sent: dict[str, float] = {}  # transfer id -> when its report-in was sent
    answered: list[float] = []
    errors: list[str] = []
    queue = list(transfers)
    lock = threading.Lock()

    scheduled = iter(range(count))

    def client():
        with platform.client() as api:
            api.timeout = httpx.Timeout(60)
            while True:
                with lock:
                    if not queue:
                        return
                    transfer = queue.pop()
                    slot = next(scheduled)
                if rate:
                    time.sleep(max(0.0, first_sent + slot / rate - time.perf_counter()))
                key = uuid.uuid4().hex
                started = sent[transfer["id"]] = time.perf_counter()
                response = api.post(f"/transfers/{transfer['id']}/report-in", headers={"Idempotency-Key": key})
                answered.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["status"] != "completed":
                    errors.append(response.text[:200])

    first_sent = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def correlated():
        completions, changes = {}, {}
        for event in list(stream.events):
            data = event["data"]
            if data["type"] == "transfer.completed" and data["subject"] in sent:
                completions.setdefault(data["subject"], data["id"])
            elif data["type"] == "coverage.changed" and data["data"].get("cause") == "transfer.completed":
                changes.setdefault(data.get("causationid"), data["id"])  # the first, of either side
        return completions, changes

    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        completions, changes = correlated()
        if len(completions) == len(sent) and all(c in changes for c in completions.values()):
            break
        time.sleep(0.1)
    stream.close()
    completions, changes = correlated()
    completed_at = [stream.received_at[event_id] for event_id in completions.values()]
    latencies = [stream.received_at[changes[event_id]] - sent[transfer_id]
                 for transfer_id, event_id in completions.items() if event_id in changes]
    elapsed = (max(completed_at) - first_sent) if completed_at else float("nan")
    return {"transfers": count, "concurrency": concurrency, "rate_per_s": rate or "as fast as answered",
            "errors": len(errors),
            "completed_missing": count - len(completions), "coverage_changed_missing": count - len(latencies),
            "completed_per_s": round(len(completions) / elapsed, 1),
            "report_in_to_coverage_changed_p50_ms": ms(percentile(latencies, 50)),
            "report_in_to_coverage_changed_p99_ms": ms(percentile(latencies, 99)),
            "http_response_p50_ms": ms(percentile(answered, 50)), "http_response_p99_ms": ms(percentile(answered, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke check")
    args = parser.parse_args()

    def show(name: str, figures: dict):
        print(f"{name:28s} " + "  ".join(f"{k}={v}" for k, v in figures.items()), flush=True)

    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING"})
        try:
            mongodb_uri = f"mongodb://127.0.0.1:{platform.secantus_port}/?directConnection=true"
            show("raw rabbitmq", raw_rabbitmq(amqp_uri, 1000 if args.quick else 3000))
            show("raw mongodb", raw_mongodb(mongodb_uri, 300 if args.quick else 1000))
            count = 30 if args.quick else 200
            show(f"transfers x{count}", transfer_benchmark(platform, count))
            paced = 20 if args.quick else 100
            show(f"transfers x{paced} @10/s", transfer_benchmark(platform, paced, rate=10))
            print("latency: report-in POST -> coverage.changed on SSE (each completion flips its sending unit's "
                  "should_establish, so every transfer causes one; matched transfer id -> transfer.completed id "
                  "-> causationid)", flush=True)
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
