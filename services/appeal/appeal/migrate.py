"""Database preparation: the appeal service's indexes (the grid cells of locations, the timers'
keys, lists by department, division and status), and contact details sealed under an earlier
key brought under the current one."""

import logging

from service_kit.pii import FieldCipher, cipher_from_config

from . import repository

log = logging.getLogger(__name__)


def reencrypt_contacts(db, cipher: FieldCipher) -> int:
    """Contact details sealed under an earlier key (FIELD_ENCRYPTION_PREVIOUS_KEYS) sealed again
    under the current one. Runs before the service takes calls; each update is conditional on
    the old values, so replicas starting together agree."""
    moved = 0
    for appeal in db.appeals.find({"contact": {"$ne": None}}, {"contact": 1}):
        sealed = appeal["contact"]
        fresh = {field: cipher.reencrypted(token, f"appeal:{appeal['_id']}:{field}") for field, token in sealed.items()}
        if any(fresh.values()):
            update = {field: fresh[field] or token for field, token in sealed.items()}
            moved += db.appeals.update_one({"_id": appeal["_id"], "contact": sealed},
                                           {"$set": {"contact": update}}).modified_count
    return moved


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run appeal migrate` (and every start) does."""
    repository.ensure_indexes(db)
    if moved := reencrypt_contacts(db, cipher_from_config(config)):
        log.info("%d appeal(s)' contact details re-encrypted under the current key", moved)
