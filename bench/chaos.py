"""Chaos run: the whole platform as `make run` starts it, written to without a break by a few
clients as a frontend would, while each of its processes is killed with -9 in turn (the database
among them) and the broker drops every connection of the platform twice. It gives the figures
the fault issue asks for: writes acknowledged, lost and doubled, the statuses clients saw after
each fault, how long until writes were answered 2xx again, and whether coverage still adds up.

    .venv/bin/python bench/chaos.py [--quick]

Clients (CLIENTS threads, the admin's token) register units in four streets of Pingyin (370124),
three at a time, and then, in turn: a joint branch covering the three and three full members of
the first (which should then establish an organization of its own); a standalone branch of the
first and three full members of it (which then should not); or nothing. An organization or a
member is only written for what the clients were told exists. Each write has its own
Idempotency-Key and is sent again under it after a 5xx, a 429, a timeout or a connection error,
after a short pause, until it is answered below 500 (or DEADLINE_SECONDS pass).

The faults come 40 s apart (--quick: 10 s). A fault's statuses are the answers (and transport
errors) clients met from it until the next one, so a request the fault cut short counts under it;
its recovery time runs from the fault until the first 2xx answer to a request sent after it (a
first try or a retry alike: either is a write the platform had to take after the fault). That
can hide writes that stall while others go through (a transaction the killed process left open
holds up only what it touched), so each fault also shows when the last write that met an error
after it was acknowledged.

Then, writers stopped and nothing left to deliver, it checks the databases directly and the API:
- lost: an acknowledged unit, organization or member that is not stored (under the id it was
  acknowledged with);
- doubled: a unit's credit code, an organization's or a member's name stored more than once (a
  write never acknowledged may be stored once, its answer lost, never twice);
- drift: a street's coverage unlike a recount from what the clients were told (CONTRACT.md's
  definitions), a unit's full members unlike the members acknowledged for it, or the organization
  service's reconciliation (report mode) finding drifted counters or units.

Exits 1 if anything was lost, doubled or drifted. Writes bench/results/chaos-<timestamp>.json,
every write included: when it was sent, each status seen, the final one, the id acknowledged."""

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platform_contracts.member import id_number_check_character  # noqa: E402
from platform_testing import credit_code, new_phone, rabbit_vhost, rpc_cluster  # noqa: E402
from tests.harness import RunningPlatform  # noqa: E402

DISTRICT = "370124"  # Pingyin county: no test or other benchmark writes there
STREETS = [f"{DISTRICT}{street}" for street in ("101", "102", "103", "104")]
CLIENTS = 4
# A process killed inside a transaction holds what it wrote until the transaction is ended: within
# about 4 s by the restarted owner (the harness's 1 s heartbeat), at worst after the database's 60 s
# transaction lifetime. Three minutes allow for either with room to spare.
DEADLINE_SECONDS = 180
RETRY_PAUSE_SECONDS = 0.5
IDENTITY = {"unit": "credit_code", "organization": "name", "member": "name"}
COVERAGE_COUNTS = ("units", "organization_covered", "work_covered", "uncovered", "standalone_units",
                   "should_establish")
RATES = {"organization_rate": "organization_covered", "work_rate": "work_covered",
         "standalone_rate": "standalone_units"}


# ---- the clients ---------------------------------------------------------------------------------

@dataclass
class Attempt:
    sent_at: float  # seconds since the run began
    answered_at: float
    status: int | str  # the HTTP status, or the name of the transport error
    detail: str | None = None  # a 500's problem document: the evidence


@dataclass
class Write:
    kind: str
    key: str
    street: str
    sent_at: float
    body: dict
    attempts: list[Attempt] = field(default_factory=list)
    final: int | str | None = None
    acknowledged_id: str | None = None
    problem: str | None = None  # the answer that refused it, if one did

    @property
    def identity(self) -> str:
        return self.body[IDENTITY[self.kind]]


def answered_2xx(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 300


class Clients:
    """CLIENTS threads writing until told to stop, and everything they sent and were told."""

    def __init__(self, platform: RunningPlatform, started: float):
        self.platform = platform
        self.started = started
        self.writes: list[Write] = []
        self.outstanding: set[str] = set()  # keys of the requests waiting for an answer right now
        self.stopping = threading.Event()
        self._serials = itertools.count(1)
        self._threads = [threading.Thread(target=self._write_continuously, args=(index,), daemon=True)
                         for index in range(CLIENTS)]

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(DEADLINE_SECONDS + 60)

    def _write_continuously(self, index: int) -> None:
        with self.platform.client() as api:
            for cycle in itertools.count():
                if self.stopping.is_set():
                    return
                street = STREETS[(index + cycle) % len(STREETS)]
                units = [w.acknowledged_id for w in
                         (self._send(api, "unit", "/units", self._unit_body(street), street) for _ in range(3))
                         if w.acknowledged_id]
                shape = cycle % 3
                if not units or shape == 2:
                    continue
                covered = units if shape == 0 else units[:1]
                kind, formation = ("joint_branch", "joint") if shape == 0 else ("branch", "standalone")
                organization = self._send(api, "organization", "/organizations", {
                    "name": f"故障支部{next(self._serials)}", "kind": kind, "formation": formation,
                    "division": street, "unit_ids": covered, "secretary": "李书记"}, street)
                if organization.acknowledged_id:
                    for _ in range(3):
                        self._send(api, "member", "/members",
                                   self._member_body(organization.acknowledged_id, units[0]), street)

    def _unit_body(self, street: str) -> dict:
        return {"credit_code": credit_code(street), "name": f"故障单位{next(self._serials)}",
                "type": "platform_company", "industry": "delivery", "division": street}

    def _member_body(self, organization_id: str, unit_id: str) -> dict:
        serial = next(self._serials)
        # Unique by construction: random ID numbers collide often enough over a few thousand
        # members to turn into 409s that say nothing about the faults.
        born = date(1970, 1, 1) + timedelta(days=serial // 1000)
        first_17 = f"{DISTRICT}{born:%Y%m%d}{serial % 1000:03d}"
        return {"name": f"故障骑手{serial}", "id_number": first_17 + id_number_check_character(first_17),
                "phone": new_phone(), "organization_id": organization_id, "unit_id": unit_id, "stage": "full",
                "joined_on": "2015-07-01", "stage_on": "2016-07-01", "occupation": "rider"}

    def _send(self, api: httpx.Client, kind: str, path: str, body: dict, street: str) -> Write:
        write = Write(kind, uuid.uuid4().hex, street, round(self.now(), 3), body)
        self.writes.append(write)
        while True:
            self.outstanding.add(write.key)
            sent_at = self.now()
            try:
                response = api.post(path, json=body, headers={"Idempotency-Key": write.key})
                status = response.status_code
            except httpx.HTTPError as exc:
                response, status = None, type(exc).__name__
            finally:
                self.outstanding.discard(write.key)
            write.attempts.append(Attempt(round(sent_at, 3), round(self.now(), 3), status,
                                          response.text[:500] if status == 500 else None))
            if response is not None and status < 500 and status != 429:
                write.final = status
                if answered_2xx(status):
                    write.acknowledged_id = response.json()["id"]
                else:
                    write.problem = response.text[:500]
                return write
            if self.now() - write.sent_at > DEADLINE_SECONDS:
                write.final = "never answered"
                return write
            time.sleep(RETRY_PAUSE_SECONDS)


# ---- the faults ----------------------------------------------------------------------------------

def kill(name: str):
    def fault(platform: RunningPlatform) -> str:
        before = platform.pid(name)
        platform.kill(name)  # returns once run_platform.py has started another
        return f"pid {before} -> {platform.pid(name)}"
    return f"kill -9 {name}", fault


def drop_broker_connections(platform: RunningPlatform) -> str:
    """Every connection of the platform's vhost closed by the broker at once, as a broker restart
    or an operator would: RPC clients, consumers and outbox relays alike."""
    vhost = unquote(urlsplit(platform.amqp_uri).path[1:])

    def connections() -> int:
        rows = subprocess.run(["rabbitmqctl", "-q", "list_connections", "vhost"], capture_output=True,
                              text=True, timeout=60, check=True).stdout.splitlines()
        return sum(1 for row in rows if row.strip() == vhost)
    before = connections()
    subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "dropped by bench/chaos.py"],
                   capture_output=True, text=True, timeout=60, check=True)
    return f"{before} connections closed, {connections()} open a moment later"


FAULTS = [kill("organization"), ("broker drops every connection", drop_broker_connections), kill("member"),
          kill("gateway"), kill("secantus"), kill("service-station"),
          ("broker drops every connection", drop_broker_connections), kill("appeal")]


def inject_faults(platform: RunningPlatform, clients: Clients, warmup: float, gap: float) -> list[dict]:
    faults = []
    for number, (name, fault) in enumerate(FAULTS):
        time.sleep(max(0.0, warmup + number * gap - clients.now()))
        in_flight = {"requests": len(clients.outstanding), **platform.in_flight()}
        at = clients.now()
        try:
            detail = fault(platform)
        except Exception as exc:  # a restart that did not come is a finding, not the end of the run
            detail = f"FAILED: {exc!r}"
        print(f"{at:7.1f} s  {name}: {detail}; in flight: {in_flight}", flush=True)
        faults.append({"fault": name, "at_s": round(at, 3), "detail": detail, "in_flight": in_flight})
    time.sleep(max(0.0, warmup + len(FAULTS) * gap - clients.now()))
    return faults


def per_fault(faults: list[dict], writes: list[Write], stopped_at: float) -> list[dict]:
    """What the clients were answered in each stretch: before the first fault, then from each
    fault to the next."""
    attempts = [(index, attempt) for write in writes for index, attempt in enumerate(write.attempts)]
    starts = [{"fault": "(before the faults)", "at_s": 0.0}] + faults
    rows = []
    for number, (this, following) in enumerate(zip(starts, starts[1:] + [{"at_s": stopped_at}])):
        within = [(index, a) for index, a in attempts if this["at_s"] <= a.answered_at < following["at_s"]]
        row = {**this, "requests": len(within), "retries": sum(1 for index, _ in within if index),
               "statuses": dict(sorted(Counter(str(a.status) for _, a in within).items())),
               "longest_answer_s": round(max((a.answered_at - a.sent_at for _, a in within), default=0), 2)}
        if number:
            answered = [a.answered_at for _, a in attempts if a.sent_at >= this["at_s"] and answered_2xx(a.status)]
            row["recovery_s"] = round(min(answered) - this["at_s"], 2) if answered else None
            erred = [w for w in writes if any(this["at_s"] <= a.answered_at < following["at_s"]
                                              and not answered_2xx(a.status) for a in w.attempts)]
            if erred:
                row["errors_cleared_s"] = (None if any(not w.acknowledged_id for w in erred)
                                           else round(max(w.attempts[-1].answered_at for w in erred) - this["at_s"], 2))
        rows.append(row)
    return rows


# ---- the checks ----------------------------------------------------------------------------------

def listed(api: httpx.Client, path: str) -> list[dict]:
    items, cursor = [], None
    while True:
        response = api.get(path, params={"division": DISTRICT, "limit": 500, **({"cursor": cursor} if cursor else {})})
        response.raise_for_status()
        page = response.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def lost_and_doubled(writes: list[Write], stored: dict[str, list[dict]], id_field: str) -> dict:
    """`stored`: per kind, what one source holds in the script's district."""
    found = {kind: {} for kind in IDENTITY}
    for kind, documents in stored.items():
        for document in documents:
            found[kind].setdefault(document[IDENTITY[kind]], []).append(document[id_field])
    written = {(w.kind, w.identity) for w in writes}
    lost, doubled, unacknowledged_stored = [], [], []
    for write in writes:
        ids = found[write.kind].get(write.identity, [])
        if len(ids) > 1:
            doubled.append({"kind": write.kind, "key": write.key, "identity": write.identity, "ids": ids})
        if write.acknowledged_id and write.acknowledged_id not in ids:
            lost.append({"kind": write.kind, "key": write.key, "identity": write.identity,
                         "acknowledged_id": write.acknowledged_id, "stored_ids": ids})
        if not write.acknowledged_id and ids:
            unacknowledged_stored.append({"kind": write.kind, "key": write.key, "final": write.final, "ids": ids})
    strangers = [{"kind": kind, "identity": identity, "ids": ids} for kind, by_identity in found.items()
                 for identity, ids in by_identity.items() if (kind, identity) not in written]
    return {"lost": lost, "doubled": doubled, "stored_though_not_acknowledged": unacknowledged_stored,
            "stored_though_never_written": strangers}


def coverage_as_told(writes: list[Write], division: str) -> dict:
    """CONTRACT.md's coverage figures of `division`, counted from the acknowledged writes alone."""
    acknowledged = [w for w in writes if w.acknowledged_id and w.street.startswith(division)]
    units = {w.acknowledged_id for w in acknowledged if w.kind == "unit"}
    covered, standalone = set(), set()
    for organization in (w for w in acknowledged if w.kind == "organization"):
        covered.update(organization.body["unit_ids"])
        if organization.body["formation"] == "standalone":
            standalone.update(organization.body["unit_ids"])
    full_members = Counter(w.body["unit_id"] for w in acknowledged if w.kind == "member")
    counts = {"units": len(units), "organization_covered": len(covered & units), "work_covered": 0,
              "uncovered": len(units - covered), "standalone_units": len(standalone & units),
              "should_establish": sum(1 for u in units if full_members[u] >= 3 and u not in standalone)}
    return {**counts, **{rate: counts[count] / counts["units"] if counts["units"] else 0.0
                         for rate, count in RATES.items()}}


def coverage_drift(api: httpx.Client, writes: list[Write]) -> list[dict]:
    drift = []
    for division in [DISTRICT, *STREETS]:
        response = api.get("/coverage", params={"division": division})
        response.raise_for_status()
        told, served = coverage_as_told(writes, division), response.json()
        if any(served[k] != told[k] for k in COVERAGE_COUNTS) or any(abs(served[k] - told[k]) > 1e-6 for k in RATES):
            drift.append({"division": division, "as_told": told, "served": {k: served[k] for k in told}})
    return drift


def member_count_drift(writes: list[Write], units: list[dict], id_field: str) -> list[dict]:
    told = Counter(w.body["unit_id"] for w in writes if w.kind == "member" and w.acknowledged_id)
    return [{"unit_id": u[id_field], "full_members": u["full_members"], "as_told": told[u[id_field]]}
            for u in units if u["full_members"] != told[u[id_field]]]


def reconciliation(platform: RunningPlatform, api: httpx.Client) -> dict:
    response = api.post("/coverage/reconcile", params={"repair": "false"}, timeout=120)
    if response.status_code != 504:
        response.raise_for_status()
        return {"through": "gateway", **response.json()}
    # A recount of thousands of units can outlast the gateway's RPC timeout of this run (5 s, the
    # faults' setting): the same call then goes to the service directly, with time to finish.
    with rpc_cluster(platform.amqp_uri, timeout=300) as proxy:
        report = proxy.organization.reconcile_coverage(
            actor={"username": "admin", "role": "admin", "scope": None}, repair=False)
    return {"through": "RPC (the gateway answered 504)", **report}


def check(platform: RunningPlatform, writes: list[Write]) -> dict:
    in_district = {"division": {"$regex": f"^{DISTRICT}"}}
    client = pymongo.MongoClient(platform.mongodb_uri)
    try:
        organization_db = client[platform.databases["organization"]]
        in_database = {
            "unit": list(organization_db.units.find(in_district, {"credit_code": 1, "full_members": 1})),
            "organization": list(organization_db.organizations.find(in_district, {"name": 1})),
            "member": list(client[platform.databases["member"]].members.find(in_district, {"name": 1})),
        }
    finally:
        client.close()
    with platform.client() as api:
        through_api = {"unit": listed(api, "/units"), "organization": listed(api, "/organizations"),
                       "member": listed(api, "/members")}
        coverage = coverage_drift(api, writes)
        report = reconciliation(platform, api)
    database, served = lost_and_doubled(writes, in_database, "_id"), lost_and_doubled(writes, through_api, "id")
    return {
        "database": database, "api": served,
        "drift": {"coverage_unlike_what_clients_were_told": coverage,
                  "full_members_unlike_what_clients_were_told": {
                      "database": member_count_drift(writes, in_database["unit"], "_id"),
                      "api": member_count_drift(writes, through_api["unit"], "id")},
                  "reconciliation": report},
    }


# ---- the run -------------------------------------------------------------------------------------

def summary(writes: list[Write], verdict: dict) -> dict:
    drift = verdict["drift"]
    report = drift["reconciliation"]
    return {
        "writes": len(writes),
        "writes_by_kind": dict(Counter(w.kind for w in writes)),
        "acknowledged": sum(1 for w in writes if w.acknowledged_id),
        "final_statuses": dict(Counter(str(w.final) for w in writes)),
        "requests": sum(len(w.attempts) for w in writes),
        "retries": sum(len(w.attempts) - 1 for w in writes),
        "statuses_seen": dict(sorted(Counter(str(a.status) for w in writes for a in w.attempts).items())),
        "answered_500": [{"kind": w.kind, "key": w.key, "sent_at_s": a.sent_at, "detail": a.detail}
                         for w in writes for a in w.attempts if a.status == 500],
        "not_acknowledged": [{"kind": w.kind, "key": w.key, "final": w.final, "problem": w.problem}
                             for w in writes if not w.acknowledged_id],
        "lost": max(len(verdict["database"]["lost"]), len(verdict["api"]["lost"])),
        "doubled": max(len(verdict["database"]["doubled"]), len(verdict["api"]["doubled"])),
        "stored_though_not_acknowledged": len(verdict["database"]["stored_though_not_acknowledged"]),
        "drift": {"coverage_divisions": len(drift["coverage_unlike_what_clients_were_told"]),
                  "unit_member_counts": max(map(len, drift["full_members_unlike_what_clients_were_told"].values())),
                  "reconcile_drifted_counters": report["drifted_counters"],
                  "reconcile_drifted_units": report["drifted_units"],
                  "reconcile_incomplete": int(not report["complete"])},
    }


def shown(seconds: float | str | None) -> str:
    return "never" if seconds is None else seconds if isinstance(seconds, str) else f"{seconds:.2f}"


def print_table(rows: list[dict], totals: dict, settled: str) -> None:
    print(f"\n{'fault':32s} {'at s':>7s} {'in flight req/outbox/unacked':>29s} {'requests':>8s} {'retries':>7s} "
          f"{'recovery s':>10s} {'cleared s':>9s} {'longest s':>9s}  statuses")
    for row in rows:
        in_flight = row.get("in_flight")
        flight = (f"{in_flight['requests']}/{sum(in_flight['outbox_unpublished'].values())}/"
                  f"{sum(in_flight['unacknowledged'].values())}" if in_flight else "-")
        recovery, cleared = (shown(row.get(key, "-")) for key in ("recovery_s", "errors_cleared_s"))
        statuses = " ".join(f"{status}:{count}" for status, count in row["statuses"].items())
        print(f"{row['fault']:32s} {row['at_s']:7.1f} {flight:>29s} {row['requests']:8d} {row['retries']:7d} "
              f"{recovery:>10s} {cleared:>9s} {row['longest_answer_s']:9.2f}  {statuses}")
    print(f"\nwrites {totals['writes']} {totals['writes_by_kind']}; acknowledged {totals['acknowledged']}; "
          f"final statuses {totals['final_statuses']}; requests {totals['requests']} ({totals['retries']} retries)")
    print(f"lost {totals['lost']}, doubled {totals['doubled']}, stored though not acknowledged "
          f"{totals['stored_though_not_acknowledged']}, drift {totals['drift']}; settling: {settled}")
    for answer in totals["answered_500"][:5]:
        print(f"500 at {answer['sent_at_s']:.1f} s to a {answer['kind']} write: {answer['detail']}")
    for write in totals["not_acknowledged"][:5]:
        print(f"{write['kind']} write {write['key']} not acknowledged: {write['final']} {write['problem']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="faults 10 s apart (about 2 minutes), for a smoke check")
    args = parser.parse_args()
    warmup, gap = (8, 10) if args.quick else (20, 40)
    began = time.monotonic()
    with rabbit_vhost() as amqp_uri, tempfile.TemporaryDirectory(prefix="bench-") as data_dir:
        # The heartbeat as `make run` has it (the test harness quickens it): how long a killed
        # process's open transactions hold up writes is part of what an operator would see.
        platform = RunningPlatform(Path(data_dir), amqp_uri, {"LOG_LEVEL": "WARNING",
                                                              "TRANSACTION_OWNER_HEARTBEAT_SECONDS": "2"})
        try:
            platform.admin_token()  # before the faults: the clients' token, not a write of theirs
            print(f"platform ready after {time.monotonic() - began:.0f} s; {CLIENTS} clients writing", flush=True)
            clients = Clients(platform, time.monotonic())
            clients.start()
            faults = inject_faults(platform, clients, warmup, gap)
            clients.stop()
            stopped_at = clients.now()
            try:
                platform.wait_until_settled(timeout=180)
                settled = f"nothing left to deliver {clients.now() - stopped_at:.1f} s after the writers stopped"
            except TimeoutError as exc:
                settled = f"NOT SETTLED: {exc}"
            verdict = check(platform, clients.writes)
            restarts = [line.strip() for line in platform.output if "exited" in line]
        finally:
            platform.stop()
    rows = per_fault(faults, clients.writes, stopped_at)
    totals = summary(clients.writes, verdict)
    print_table(rows, totals, settled)
    results = {"quick": args.quick, "clients": CLIENTS, "writing_s": round(stopped_at, 1), **totals,
               "faults": rows, "settled": settled, "restarts_logged": restarts, "checks": verdict,
               "writes_detail": [asdict(w) for w in clients.writes]}
    out = ROOT / "bench" / "results" / f"chaos-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    failed = totals["lost"] or totals["doubled"] or any(totals["drift"].values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
