"""The fingerprint of a request with an Idempotency-Key, which the service keeps beside the
command's result: keyed, so that the database does not give back what the body held."""

import hashlib
import hmac
import json
import uuid

import pytest

from gateway.idempotency import canonical_request, fingerprint_key
from gateway_test_support import JWT_SECRET  # noqa: E402
from test_http import last_call, unit_command

pytestmark = pytest.mark.timeout(60)


def test_idempotency_fingerprint_is_not_a_plain_sha256_of_the_body(gateway, admin):
    """A plain hash of a body holding an ID number and a phone could be brute-forced back to
    them by whoever reads the service's command log; the gateway sends (and the service
    stores) an HMAC under a key derived from JWT_SECRET instead."""
    command = unit_command()
    admin.post("/api/v1/units", json=command, headers={"Idempotency-Key": uuid.uuid4().hex})
    stored = last_call(gateway)["command_id"]["request"]
    canonical = canonical_request("POST", "/api/v1/units", [], json.dumps(command).encode())
    assert stored != hashlib.sha256(canonical).hexdigest()
    assert stored == hmac.new(fingerprint_key(JWT_SECRET), canonical, hashlib.sha256).hexdigest()
