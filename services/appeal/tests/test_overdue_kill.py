"""A `kill -9` of the appeal service while its overdue timer works through many appeals past
their deadline: every one of them gets exactly one `appeal.overdue` (and one
`appeal.escalated`), none is missed and none is announced twice, because each appeal's flag and
its events commit in one transaction and the relay publishes from the outbox.

The appeals are written straight into a database of this test's own (a replica of the service
started on it sweeps them as it starts), so that the kill lands in the middle of the sweep: the
test shows, at the kill, how many appeals were still unflagged and how many events unpublished."""

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pymongo

from appeal import domain
from platform_testing import EventTap, wait_for
from service_kit import nearby

APPEALS = 600


def overdue_appeal(now: datetime, department_id: str) -> dict:
    appeal = domain.new_appeal(
        {"category": "hazard", "title": "井盖缺失", "description": "路口井盖缺失", "division": "370113001",
         "address": None, "media": [], "public": True, "channel": "api",
         "submitter": {"kind": "anonymous", "unit_id": None, "member_id": None}, "contact": None,
         "contact_masked": None, nearby.LOCATION_FIELD: {"type": "Point", "coordinates": [116.74, 36.55]},
         **nearby.cell_fields(116.74, 36.55)},
        appeal_id=str(uuid.uuid4().hex[:24]), raised_by=None, now=now - timedelta(days=10), actor="anonymous")
    appeal.update(status="accepted", department=department_id, accepted_at=now - timedelta(days=9))
    appeal.update(due_at=now - timedelta(hours=1), overdue_at=now - timedelta(hours=1), sla_working_days=2,
                  clock_started_at=now - timedelta(days=9))
    return appeal


def test_each_overdue_appeal_is_announced_exactly_once_across_a_kill(start_service, mongodb_uri, amqp_uri):
    database_name = f"appeal_kill_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    db = client[database_name]
    now = datetime.now(timezone.utc)
    department = {"_id": uuid.uuid4().hex[:24], "name": "长清区城管局", "division": "370113001",
                  "supervisor": "chief", "kind": None, "created_at": now}
    db.departments.insert_one(department)
    appeals = [overdue_appeal(now, department["_id"]) for _ in range(APPEALS)]
    db.appeals.insert_many(appeals)
    ids = {a["_id"] for a in appeals}
    env = {"MONGODB_APPEAL_DB": database_name, "APPEAL_OVERDUE_CHECK_SECONDS": "1", "APPEAL_OVERDUE_BATCH": "50",
           "OUTBOX_POLL_SECONDS": "0.2"}
    with EventTap(amqp_uri, "appeal.events") as tap:
        first = start_service("appeal", env, log_name="appeal-killed", wait=False)

        def announced() -> list[dict]:
            return [e for e in tap.drain() if e["subject"] in ids and e["type"] == "appeal.overdue"]

        wait_for(lambda: len(announced()) >= 100, timeout=120, what="the sweep under way")
        first.kill()
        unflagged = db.appeals.count_documents({"overdue_at": {"$ne": None}})
        unpublished = db.outbox.count_documents({"published_at": None}) if "outbox" in db.list_collection_names() \
            else 0
        print(f"at the kill: {APPEALS - unflagged} of {APPEALS} flagged, {unflagged} still to flag, "
              f"{unpublished} events unpublished, {len(announced())} announcements seen")
        assert unflagged > 0, "the kill came after the sweep had finished: it proves nothing"

        start_service("appeal", env, log_name="appeal-restarted")
        wait_for(lambda: db.appeals.count_documents({"overdue_at": {"$ne": None}}) == 0, timeout=300,
                 what="every appeal flagged")
        wait_for(lambda: {e["subject"] for e in announced()} == ids, timeout=120, what="every appeal announced")
        overdue = announced()
        escalated = [e for e in tap.drain() if e["subject"] in ids and e["type"] == "appeal.escalated"]

    # Exactly one appeal.overdue per appeal: one event id each (a batch the relay had published
    # but not marked when it was killed goes out again under the same id, which consumers drop).
    ids_per_appeal = Counter()
    for subject, event_id in {(e["subject"], e["id"]) for e in overdue}:
        ids_per_appeal[subject] += 1
    assert set(ids_per_appeal) == ids and set(ids_per_appeal.values()) == {1}
    assert {e["subject"] for e in escalated} == ids
    assert len({(e["subject"], e["id"]) for e in escalated}) == APPEALS
    stored = list(db.appeals.find({}, {"history": 1, "overdue": 1}))
    assert all(a["overdue"] for a in stored)
    assert all([h["action"] for h in a["history"]].count("overdue") == 1 for a in stored)
    assert db.overdue_counts.find_one({"_id": f"{department['_id']}|370113"})["count"] == APPEALS
    print(f"after the restart: {len(overdue)} appeal.overdue messages on the wire for {APPEALS} appeals "
          f"({len(overdue) - APPEALS} republished under the same id)")
    client.drop_database(database_name)
    client.close()
