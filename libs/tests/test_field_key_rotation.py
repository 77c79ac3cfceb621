"""A field-encryption key is rotated by naming the old key in FIELD_ENCRYPTION_PREVIOUS_KEYS:
it still opens what it sealed, never seals anything new, and `reencrypted` says what to seal
again (issue 12, finding 10: the organization service moves off the member service's key)."""

import base64
import os

import pytest

from service_kit.pii import FieldCipher, cipher_from_config


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_an_earlier_key_opens_what_it_sealed_and_the_current_one_seals_it_again():
    old, new = os.urandom(32), os.urandom(32)
    sealed = FieldCipher(old).encrypt("13812345678", "instructor:i1:phone")
    rotating = cipher_from_config({"FIELD_ENCRYPTION_KEY": b64(new), "FIELD_ENCRYPTION_PREVIOUS_KEYS": b64(old)})
    assert rotating.decrypt(sealed, "instructor:i1:phone") == "13812345678"
    fresh = rotating.reencrypted(sealed, "instructor:i1:phone")
    assert FieldCipher(new).decrypt(fresh, "instructor:i1:phone") == "13812345678"
    assert rotating.reencrypted(fresh, "instructor:i1:phone") is None  # already under the current key
    with pytest.raises(ValueError):
        FieldCipher(old).decrypt(fresh, "instructor:i1:phone")


def test_a_key_that_is_neither_current_nor_previous_opens_nothing():
    sealed = FieldCipher(os.urandom(32)).encrypt("13812345678", "c")
    with pytest.raises(ValueError, match="does not decrypt"):
        FieldCipher(os.urandom(32), previous_keys=[os.urandom(32)]).decrypt(sealed, "c")
