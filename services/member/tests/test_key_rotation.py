"""Issue 12, finding 10: each service has a field-encryption key of its own. Moving off the key
the services once shared is a rotation: the old key decrypts (FIELD_ENCRYPTION_PREVIOUS_KEYS)
while migrate seals every ID number and phone again under the new key and recomputes the ID
number's blind index, after which the old key is not needed and the duplicate check still
finds the member."""

import os

import pytest

from member.application import ID_NUMBER_INDEX, Commands
from member.migrate import reencrypt_personal_data
from member.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.errors import Conflict
from platform_contracts.member import RegisterMember
from service_kit.pii import FieldCipher

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
CHANGQING = {"id": "org-changqing", "division": "370113001", "status": "active"}


def register(cipher: FieldCipher, fake_uow, id_number: str, phone: str | None = None) -> dict:
    command = RegisterMember(name="王骑手", id_number=id_number, phone=phone, organization_id=CHANGQING["id"],
                             stage="probationary", occupation="rider")
    with fake_uow("member") as uow:
        return Commands(cipher, letter_valid_days=30).register_member(uow, command, CHANGQING, ADMIN)


def test_migrate_moves_personal_data_to_the_new_key_and_the_duplicate_check_still_holds(
        fake_uow, fake_db, new_id_number, new_phone):
    db = fake_db
    ensure_indexes(db)
    shared, own = os.urandom(32), os.urandom(32)
    id_number, phone = new_id_number(), new_phone()
    member = register(FieldCipher(shared), fake_uow, id_number, phone)

    rotating = FieldCipher(own, previous_keys=[shared])
    assert reencrypt_personal_data(db, rotating) == 1
    assert reencrypt_personal_data(db, rotating) == 0  # done once

    stored = db.members.find_one({"_id": member["id"]})
    own_only = FieldCipher(own)
    assert own_only.decrypt(stored["id_number_encrypted"], f"member:{member['id']}:id_number") == id_number
    assert own_only.decrypt(stored["phone_encrypted"], f"member:{member['id']}:phone") == phone
    assert stored["id_number_index"] == own_only.blind_index(id_number, ID_NUMBER_INDEX)

    with pytest.raises(Conflict):
        register(own_only, fake_uow, id_number)
