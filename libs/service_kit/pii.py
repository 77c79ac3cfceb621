"""Personal data at rest and on display: field encryption, blind indexes, masking.

- Encryption: AES-256-GCM per field, a fresh 96-bit nonce per value, and the field's context
  (e.g. "member:<id>:id_number") as associated data, so a ciphertext copied onto another
  record or field does not decrypt. Stored as "v1:" + base64(nonce + ciphertext + tag).
- Blind index: HMAC-SHA256 of the normalized value under a key of its own, for equality
  lookups and unique indexes without the plaintext. Deterministic by design, so it is only
  as secret as its key: low-entropy values (an ID number has ~10^7 plausible values per
  birth date and place) can be confirmed by whoever holds the key, never by whoever holds
  only the database.
- Both keys are derived with HKDF-SHA256 from one master key, FIELD_ENCRYPTION_KEY
  (base64 of 32 random bytes), so the service configuration holds a single secret.
"""

import base64
import binascii
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from platform_contracts.codes import mask_phone

KEY_ENV = "FIELD_ENCRYPTION_KEY"
# Earlier keys that still decrypt (a comma list), while a service's migrate re-encrypts what
# they sealed under its current key: how a key is rotated (deploy/README.md).
PREVIOUS_KEYS_ENV = "FIELD_ENCRYPTION_PREVIOUS_KEYS"
VERSION = "v1"
NONCE_BYTES = 12

__all__ = ["KEY_ENV", "PREVIOUS_KEYS_ENV", "FieldCipher", "cipher_from_config", "key_from_environment", "mask_id_number", "mask_phone", "parse_key", "redact", "redact_text"]


def parse_key(value: str | None) -> bytes:
    """The master key from its configured form; ValueError saying what is wrong (never the value)."""
    if not value:
        raise ValueError(f"{KEY_ENV} is not set")
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{KEY_ENV} is not valid base64")
    if len(key) != 32:
        raise ValueError(f"{KEY_ENV} must decode to 32 bytes, not {len(key)}")
    return key


def key_from_environment() -> str:
    """FIELD_ENCRYPTION_KEY, checked at start-up: a service must not run without it."""
    value = os.environ.get(KEY_ENV)
    try:
        parse_key(value)
    except ValueError as exc:
        raise SystemExit(
            f"{exc}: set it to base64 of 32 random bytes, e.g. "
            "`python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'` "
            "(make run generates and keeps one in .data/field_encryption_key)"
        )
    return value


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"partybuilding/" + purpose).derive(master)


def cipher_from_config(config) -> "FieldCipher":
    """The service's cipher: FIELD_ENCRYPTION_KEY, and FIELD_ENCRYPTION_PREVIOUS_KEYS if set."""
    previous = [parse_key(key) for key in str(config.get(PREVIOUS_KEYS_ENV) or "").split(",") if key.strip()]
    return FieldCipher(parse_key(config.get(KEY_ENV)), previous)


class FieldCipher:
    """Seals with the current key; opens with it or, during a rotation, with an earlier one.
    (Blind indexes are the current key's only: rotating a key that indexes values means
    recomputing them too.)"""

    def __init__(self, master_key: bytes, previous_keys: list[bytes] | tuple = ()):
        self._aead = AESGCM(_derive(master_key, b"field-encryption/v1"))
        self._previous = [AESGCM(_derive(key, b"field-encryption/v1")) for key in previous_keys]
        self._index_key = _derive(master_key, b"blind-index/v1")

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        return self._open(token, context)[0]

    def reencrypted(self, token: str, context: str) -> str | None:
        """`token` sealed again under the current key if an earlier key sealed it; else None."""
        plaintext, current = self._open(token, context)
        return None if current else self.encrypt(plaintext, context)

    def _open(self, token: str, context: str) -> tuple[str, bool]:
        """The plaintext, and whether the current key sealed it."""
        version, _, payload = token.partition(":")
        if version != VERSION:
            raise ValueError(f"unknown field encryption version {version!r}")
        raw = base64.b64decode(payload)
        for aead in (self._aead, *self._previous):
            try:
                plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
                return plaintext, aead is self._aead
            except InvalidTag:
                continue
        raise ValueError(f"field {context} does not decrypt: wrong key, or moved from another record")

    def blind_index(self, value: str, context: str) -> str:
        """The same value in the same context always gives the same index."""
        return hmac.new(self._index_key, f"{context}\x00{value}".encode(), hashlib.sha256).hexdigest()


def mask_id_number(value: str) -> str:
    """Only the last four characters show: "**************1234"."""
    return "*" * (len(value) - 4) + value[-4:]


# Second-generation (18 characters) and first-generation (15 digits, still on old records) ID
# numbers; a mobile with or without +86/0086 and spaces or dashes between its groups, as people
# type them into free text ("+86 138 1234 5678", "0086-13812345678", "138-1234-5678").
_STANDALONE_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_STANDALONE_MOBILE = re.compile(
    r"(?<![0-9A-Za-z+])(?P<country>(?:\+|00)\s?86[\s-]*)?(?P<number>1[3-9]\d[\s-]?\d{4}[\s-]?\d{4})(?![0-9A-Za-z])")


def _mask_mobile(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group("number"))
    return (match.group("country") or "") + mask_phone(digits)


def redact_text(text: str) -> str:
    """`text` with anything that looks like an ID number or a mobile phone masked."""
    # Mobiles first: "008613812345678" is fifteen digits, and a phone, not an old ID number.
    masked = _STANDALONE_MOBILE.sub(_mask_mobile, text)
    return _STANDALONE_ID_NUMBER.sub(lambda m: mask_id_number(m.group()), masked)


def redact(value):
    """A copy of `value` (JSON-like) with anything that looks like an ID number or a mobile
    phone masked, whatever field it is in: for free text (reasons, remarks) before it is stored
    or published, and for showing messages that were refused, which may hold personal data
    precisely because they broke the rules."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
