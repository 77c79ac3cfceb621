"""Database preparation: indexes, the districts and industries the deployment starts with, and
records written by earlier versions brought up to the current shape."""

import json
import logging
from datetime import datetime, timezone
from importlib import resources

from service_kit.pii import FieldCipher, cipher_from_config

from . import repository
from .application import protected_phone

log = logging.getLogger(__name__)

INDUSTRIES_IN_USE_REGISTERED = "industries_in_use_registered"  # a one-time migration done (collection `migrations`)


def seed_divisions(db) -> int:
    """Register the bundled districts that are not registered yet (operators add more)."""
    seeds = json.loads(resources.files(__package__).joinpath("divisions.json").read_text("utf-8"))
    added = 0
    for code, name in seeds.items():
        result = db.divisions.update_one(
            {"_id": code}, {"$setOnInsert": {"name": name, "level": "district"}}, upsert=True
        )
        added += int(result.upserted_id is not None)
    return added


def seed_industries(db) -> int:
    """Register the bundled industries that are not registered yet (admins add more). Where
    their GB/T 4754-2017 codes come from is said in industries.json itself."""
    seeds = json.loads(resources.files(__package__).joinpath("industries.json").read_text("utf-8"))
    added = 0
    for code, industry in seeds["industries"].items():
        result = db.industries.update_one(
            {"_id": code}, {"$setOnInsert": {"name": industry["name"], "gb4754": industry["gb4754"]}}, upsert=True
        )
        added += int(result.upserted_id is not None)
    return added


def register_industries_in_use(db) -> int:
    """Units stored while industry was free text keep a valid industry: each code they use is
    registered under its own name, with no GB/T 4754 code until an admin gives one. Done once
    (a scan of every unit; units written afterwards name registered industries, and a unit's
    stored industry is never re-checked unless it changes)."""
    if db.migrations.find_one({"_id": INDUSTRIES_IN_USE_REGISTERED}) is not None:
        return 0
    added = 0
    for code in db.units.distinct("industry"):
        result = db.industries.update_one(
            {"_id": code}, {"$setOnInsert": {"name": code, "gb4754": None}}, upsert=True
        )
        added += int(result.upserted_id is not None)
    db.migrations.update_one({"_id": INDUSTRIES_IN_USE_REGISTERED},
                             {"$setOnInsert": {"at": datetime.now(timezone.utc)}}, upsert=True)
    return added


def encrypt_instructor_phones(db, cipher: FieldCipher) -> int:
    """Instructors' phones were once stored in clear: encrypt them. Each update is conditional
    on the plaintext still being there, so replicas starting together do each one once."""
    encrypted = 0
    for instructor in db.instructors.find({"phone": {"$exists": True}}, {"phone": 1}):
        result = db.instructors.update_one(
            {"_id": instructor["_id"], "phone": instructor["phone"]},
            {"$set": protected_phone(cipher, instructor["_id"], instructor["phone"]), "$unset": {"phone": ""}},
        )
        encrypted += result.modified_count
    return encrypted


def reencrypt_instructor_phones(db, cipher: FieldCipher) -> int:
    """Phones sealed under an earlier key (FIELD_ENCRYPTION_PREVIOUS_KEYS) sealed again under the
    current one: a key rotation, and the move off the key this service once shared with the
    member service. Conditional on the old token, so replicas starting together agree."""
    moved = 0
    for instructor in db.instructors.find({"phone_encrypted": {"$exists": True}}, {"phone_encrypted": 1}):
        token = instructor["phone_encrypted"]
        fresh = cipher.reencrypted(token, f"instructor:{instructor['_id']}:phone")
        if fresh is not None:
            moved += db.instructors.update_one({"_id": instructor["_id"], "phone_encrypted": token},
                                               {"$set": {"phone_encrypted": fresh}}).modified_count
    return moved


def clear_dissolved_unit_ids(db) -> int:
    """Organizations dissolved before unit_ids were cleared on dissolution: their units no
    longer point to them, so they keep the list as former_unit_ids only."""
    moved = 0
    for organization in db.organizations.find({"status": "dissolved", "unit_ids.0": {"$exists": True}},
                                              {"unit_ids": 1}):
        result = db.organizations.update_one(
            {"_id": organization["_id"], "status": "dissolved"},
            {"$set": {"unit_ids": [], "former_unit_ids": organization["unit_ids"]}},
        )
        moved += result.modified_count
    return moved


def place_counters_in_tree(db) -> int:
    """Counter documents once carried their place in the tree (`parent`, `level`, indexed): it
    goes to coverage_tree, and those indexes go, so replacing the figures rewrites no index
    entry. (The old fields stay: older replicas still read them during an upgrade, and each
    reconciliation places what they create meanwhile.)"""
    placed = repository.Repository(db).place_unplaced_counters()
    for name in ("parent_1", "level_1"):
        if name in db.coverage_counters.index_information():
            db.coverage_counters.drop_index(name)
    return placed


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run organization migrate` (and every start) does."""
    repository.ensure_indexes(db)
    cipher = cipher_from_config(config)
    for what, count in (
        ("bundled district(s) registered", seed_divisions(db)),
        ("bundled industry(ies) registered", seed_industries(db)),
        ("industry(ies) in use by stored units registered", register_industries_in_use(db)),
        ("instructor phone(s) encrypted", encrypt_instructor_phones(db, cipher)),
        ("instructor phone(s) re-encrypted under the current key", reencrypt_instructor_phones(db, cipher)),
        ("dissolved organization(s) cleared of unit_ids", clear_dissolved_unit_ids(db)),
        ("coverage counter(s) placed in coverage_tree", place_counters_in_tree(db)),
    ):
        if count:
            log.info("%d %s", count, what)
