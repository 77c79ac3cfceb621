"""Issue 12, finding 10: the organization service no longer holds the member service's key.
Its instructors' phones, sealed under the key the two once shared, are sealed again under its
own key by migrate (FIELD_ENCRYPTION_PREVIOUS_KEYS names the shared one meanwhile)."""

import base64
import os

from organization.application import protected_phone
from organization.migrate import reencrypt_instructor_phones
from service_kit.pii import FieldCipher, cipher_from_config


def test_migrate_moves_instructors_phones_to_the_services_own_key(fake_db):
    shared, own = os.urandom(32), os.urandom(32)
    fake_db.instructors.insert_one({"_id": "i1", "name": "李指导员",
                                    **protected_phone(FieldCipher(shared), "i1", "13812345678")})
    rotating = cipher_from_config({"FIELD_ENCRYPTION_KEY": base64.b64encode(own).decode(),
                                   "FIELD_ENCRYPTION_PREVIOUS_KEYS": base64.b64encode(shared).decode()})
    assert reencrypt_instructor_phones(fake_db, rotating) == 1
    assert reencrypt_instructor_phones(fake_db, rotating) == 0
    stored = fake_db.instructors.find_one({"_id": "i1"})
    assert FieldCipher(own).decrypt(stored["phone_encrypted"], "instructor:i1:phone") == "13812345678"
