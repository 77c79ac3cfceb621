"""Each service has a field-encryption key of its own, and a key is rotated by listing the old
one in FIELD_ENCRYPTION_PREVIOUS_KEYS while migrate seals every contact detail again under the
new key, after which the old key is not needed."""

import os

from appeal.application import Commands, Settings
from appeal.migrate import reencrypt_contacts
from appeal.repository import ensure_indexes
from platform_contracts.actors import Actor
from platform_contracts.appeal import SubmitAppeal
from service_kit.pii import FieldCipher

OPERATOR = Actor.parse({"username": "op", "role": "operator", "scope": "370113"})


def test_migrate_moves_contact_details_to_the_new_key(fake_uow, fake_db):
    ensure_indexes(fake_db)
    old, new = os.urandom(32), os.urandom(32)
    command = SubmitAppeal(category="rights", title="欠薪", description="三个月未发", division="370113001",
                           submitter={"kind": "worker", "contact": {"name": "王骑手", "phone": "13712345678"}})
    with fake_uow("appeal") as uow:
        appeal = Commands(FieldCipher(old), Settings()).submit(uow, command, OPERATOR)
    anonymous = SubmitAppeal(category="hazard", title="井盖", description="缺失", division="370113001",
                             submitter={"kind": "anonymous"})
    with fake_uow("appeal") as uow:
        Commands(FieldCipher(old), Settings()).submit(uow, anonymous, OPERATOR)

    rotating = FieldCipher(new, previous_keys=[old])
    assert reencrypt_contacts(fake_db, rotating) == 1
    assert reencrypt_contacts(fake_db, rotating) == 0  # done once
    sealed = fake_db.appeals.find_one({"_id": appeal["id"]})["contact"]
    new_only = FieldCipher(new)
    assert new_only.decrypt(sealed["phone"], f"appeal:{appeal['id']}:phone") == "13712345678"
    assert new_only.decrypt(sealed["name"], f"appeal:{appeal['id']}:name") == "王骑手"
