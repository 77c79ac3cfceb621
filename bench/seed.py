"""Loads units straight into the organization service's database for the coverage-query
benchmark: hundreds of thousands of units through the API would spend the benchmark's time
on registration, which is measured separately. Units and counters are built by the service's
own domain and repository code, so what is loaded is what the service would have written."""

import random
import uuid
from datetime import datetime, timezone

import pymongo

from organization import domain
from organization.repository import Repository
from service_kit.documents import new_id
from platform_contracts.codes import credit_code_check_character

BATCH = 5000
DIVISIONS = ["370113", "370112", "370102", "370211"]
INDUSTRIES = ["express", "food_delivery", "ride_hailing", "retail", "software", "catering", "logistics"]
TYPES = ["enterprise", "social_organization", "platform_company", "market", "building", "park"]


def seeded_credit_code(district: str, serial: int) -> str:
    # Registration authority "Y" (other): API-made test codes start with "9", so they never clash.
    body = f"Y1{district}{serial:09d}"
    return body + credit_code_check_character(body)


def generated_unit(now, serial: int) -> dict:
    district = random.choice(DIVISIONS)
    return domain.refresh_unit({
        "_id": new_id(), "credit_code": seeded_credit_code(district, serial),
        "name": f"seed-{uuid.uuid4().hex[:8]}", "type": random.choice(TYPES),
        "industry": random.choice(INDUSTRIES),
        "division": f"{district}{random.randrange(1, 25):03d}{random.randrange(1, 40):03d}",
        "employees": random.randrange(1, 500), "above_scale": random.random() < 0.1, "address": None,
        "full_members": random.choice([0, 0, 0, 1, 2, 3, 5]), "probationary_members": 0,
        "organization_ids": [], "standalone_organization_ids": [],
        "instructor_id": "seeded-instructor" if random.random() < 0.4 else None,
        "status": "active", "registered_at": now, "updated_at": now,
    })


def seed_units(mongodb_uri: str, database: str, target_total: int) -> int:
    """Add units until the database holds `target_total`; returns how many were added."""
    client = pymongo.MongoClient(mongodb_uri)
    try:
        db = client[database]
        repo = Repository(db)
        # Counted once: a count per batch (a regex one above all) scans what is already there.
        missing = target_total - db.units.count_documents({})
        serial = db.units.count_documents({"credit_code": {"$gte": "Y1", "$lt": "Y2"}})
        added = 0
        while added < missing:
            now = datetime.now(timezone.utc)
            batch = [generated_unit(now, serial + added + i) for i in range(min(BATCH, missing - added))]
            db.units.insert_many(batch)
            repo.increment_counters(domain.expected_counters(batch), now)
            added += len(batch)
        return added
    finally:
        client.close()
