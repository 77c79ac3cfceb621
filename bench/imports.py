"""Benchmark of a ledger import (issue 15), on the platform as `make run` starts it, beside the
bare cost of the same writes measured in the same run (these machines are shared and noisy:
compare ratios, not absolutes).

    .venv/bin/python bench/imports.py [--rows 230000] [--bare-rows 50000]

0. Reading the ledger: python-calamine (what the import uses) beside openpyxl's read-only mode.
1. Bare `insert_many` of unit documents as the service stores them, in batches of 1,000, on the
   platform's own MongoDB: into a collection with no secondary index, and into one with the
   `units` collection's indexes (the unique credit code, division, should-establish, status).
2. The import of a `.xlsx` units ledger of `--rows` rows through the gateway (POST /imports):
   from the upload to `status: done`, every unit registered, counted and its events published.
   Also: the same import through `POST /units/bulk` (1,000 a call) on a sample, for comparison.

Writes bench/results/imports-<timestamp>.json."""

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pymongo
from openpyxl import Workbook, load_workbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "services" / "organization"))
sys.path.insert(0, str(ROOT / "services" / "gateway"))

from gateway.ledgers.workbook import read_table  # noqa: E402
from organization.repository import ensure_indexes  # noqa: E402
from platform_testing import credit_code, rabbit_vhost, wait_for  # noqa: E402
from tests.harness import RunningPlatform  # noqa: E402

BATCH = 1000
BULK_BATCH = 500
DISTRICTS = ["370102", "370103", "370104", "370105", "370112"]


def unit_document(code: str, division: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"_id": uuid.uuid4().hex, "credit_code": code, "name": "某某快递网点", "type": "enterprise",
            "industry": "express", "division": division, "employees": 12, "above_scale": False, "address": None,
            "full_members": 0, "probationary_members": 0, "organization_ids": [], "standalone_organization_ids": [],
            "instructor_id": None, "status": "active", "coverage": "none", "should_establish": False,
            "standalone": False, "registered_at": now, "updated_at": now}


def bare_insert_many(collection, rows: int) -> dict:
    began = time.perf_counter()
    for start in range(0, rows, BATCH):
        collection.insert_many([unit_document(credit_code(d), d + "001001")
                                for d in DISTRICTS for _ in range(min(BATCH, rows - start) // len(DISTRICTS))])
    seconds = time.perf_counter() - began
    return {"documents": rows, "seconds": round(seconds, 1), "per_s": round(rows / seconds)}


def ledger(rows: int) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("单位台账")
    sheet.append(["统一社会信用代码", "单位名称", "单位类型", "所属行业", "区划代码", "从业人员数", "是否规上"])
    for n in range(rows):
        district = DISTRICTS[n % len(DISTRICTS)]
        sheet.append([credit_code(district), f"网点{n}", "非公企业", "快递", f"{district}001{n % 50 + 1:03d}", 12, "否"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def reading(content: bytes) -> dict:
    """The ledger read whole, as the import reads it (python-calamine) and with openpyxl's
    read-only mode, the usual Python reader."""
    began = time.perf_counter()
    rows = len(read_table(content, "units.xlsx"))
    calamine = time.perf_counter() - began
    began = time.perf_counter()
    workbook = load_workbook(io.BytesIO(content), read_only=True)
    assert sum(1 for _ in workbook.active.iter_rows(values_only=True)) == rows
    return {"rows": rows - 1, "calamine_s": round(calamine, 1), "openpyxl_s": round(time.perf_counter() - began, 1)}


def import_ledger(platform: RunningPlatform, content: bytes, rows: int) -> dict:
    with platform.client() as api:
        began = time.perf_counter()
        response = api.post("/imports", data={"ledger": "units"}, files={"file": ("units.xlsx", content)},
                            timeout=300)
        response.raise_for_status()
        accepted = time.perf_counter() - began
        url = f"/imports/{response.json()['id']}"
        wait_for(lambda: api.get(url).json()["status"] in ("done", "failed"), timeout=3600, interval=0.5,
                 what="the import done")
        seconds = time.perf_counter() - began
        job = api.get(url).json()
    assert (job["status"], job["imported"]) == ("done", rows), job
    return {"rows": rows, "file_mb": round(len(content) / 2**20, 1), "upload_accepted_s": round(accepted, 1),
            "seconds": round(seconds, 1), "per_s": round(rows / seconds)}


def bulk_endpoint(platform: RunningPlatform, rows: int) -> dict:
    """POST /units/bulk, 500 a call as bench/run.py sends them; a call the gateway gives up on
    (504 after RPC_TIMEOUT_SECONDS) is counted, not retried."""
    registered, refused = 0, {}
    with platform.client() as api:
        began = time.perf_counter()
        for _ in range(0, rows, BULK_BATCH):
            units = [{"credit_code": credit_code(d), "name": "网点", "type": "enterprise", "industry": "express",
                      "division": d + "002001"} for d in DISTRICTS for _ in range(BULK_BATCH // len(DISTRICTS))]
            response = api.post("/units/bulk", json={"units": units}, timeout=120)
            if response.status_code == 201:
                registered += len(units)
            else:
                refused[response.status_code] = refused.get(response.status_code, 0) + 1
        seconds = time.perf_counter() - began
    return {"rows": rows, "registered": registered, "refused_calls": refused, "seconds": round(seconds, 1),
            "per_s": round(registered / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=230_000, help="rows of the imported ledger")
    parser.add_argument("--bare-rows", type=int, default=50_000, help="documents of each bare insert_many run")
    parser.add_argument("--bulk-rows", type=int, default=5_000, help="units through POST /units/bulk")
    args = parser.parse_args()
    results: dict = {}

    def show(name: str, values: dict):
        results[name] = values
        print(f"{name:28s} " + "  ".join(f"{k}={v}" for k, v in values.items()), flush=True)

    began = time.perf_counter()
    content = ledger(args.rows)
    print(f"wrote a {args.rows}-row ledger ({len(content) / 2**20:.1f} MB) in {time.perf_counter() - began:.1f} s",
          flush=True)
    show("reading the ledger", reading(content))
    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING"})
        client = pymongo.MongoClient(platform.mongodb_uri, tz_aware=True)
        try:
            scratch = client[f"bench_{uuid.uuid4().hex[:6]}"]
            show("bare insert_many", bare_insert_many(scratch.plain, args.bare_rows))
            ensure_indexes(scratch)  # the organization service's indexes, on the scratch `units`
            show("bare insert_many, indexed", bare_insert_many(scratch.units, args.bare_rows))
            client.drop_database(scratch.name)
            show("import (POST /imports)", import_ledger(platform, content, args.rows))
            show("POST /units/bulk", bulk_endpoint(platform, args.bulk_rows))
            show("bare insert_many, again", bare_insert_many(client[scratch.name].plain, args.bare_rows))
            client.drop_database(scratch.name)
            bare = (results["bare insert_many"]["per_s"] + results["bare insert_many, again"]["per_s"]) / 2
            results["ratios"] = {
                "import_over_bare_insert_many": round(results["import (POST /imports)"]["per_s"] / bare, 2),
                "import_over_bare_insert_many_indexed": round(
                    results["import (POST /imports)"]["per_s"] / results["bare insert_many, indexed"]["per_s"], 2),
                "units_bulk_over_bare_insert_many": round(results["POST /units/bulk"]["per_s"] / bare, 2),
            }
            print(f"ratios: {results['ratios']}", flush=True)
        finally:
            client.close()
            platform.stop()
    out = ROOT / "bench" / "results" / f"imports-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
