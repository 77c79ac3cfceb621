"""Database preparation: the member service's indexes (the blind index's unique one among
them), and personal data sealed under an earlier key brought under the current one."""

import logging

from service_kit.pii import FieldCipher, cipher_from_config

from . import repository
from .application import ID_NUMBER_INDEX

log = logging.getLogger(__name__)


def reencrypt_personal_data(db, cipher: FieldCipher) -> int:
    """ID numbers and phones sealed under an earlier key (FIELD_ENCRYPTION_PREVIOUS_KEYS) sealed
    again under the current one, with the ID number's blind index recomputed (the index is the
    current key's too). Runs before the service takes calls; each update is conditional on the
    old values, so replicas starting together agree."""
    moved = 0
    for member in db.members.find({}, {"id_number_encrypted": 1, "phone_encrypted": 1}):
        update = {}
        id_context = f"member:{member['_id']}:id_number"
        if (token := member.get("id_number_encrypted")) and (fresh := cipher.reencrypted(token, id_context)):
            update["id_number_encrypted"] = fresh
            update["id_number_index"] = cipher.blind_index(cipher.decrypt(token, id_context), ID_NUMBER_INDEX)
        phone_context = f"member:{member['_id']}:phone"
        if (token := member.get("phone_encrypted")) and (fresh := cipher.reencrypted(token, phone_context)):
            update["phone_encrypted"] = fresh
        if update:
            condition = {"_id": member["_id"], **{k: member.get(k) for k in ("id_number_encrypted", "phone_encrypted")}}
            moved += db.members.update_one(condition, {"$set": update}).modified_count
    return moved


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run member migrate` (and every start) does."""
    repository.ensure_indexes(db)
    if moved := reencrypt_personal_data(db, cipher_from_config(config)):
        log.info("%d member(s)' personal data re-encrypted under the current key", moved)
