"""Fingerprints of requests that carry an Idempotency-Key.

The service keeps a request's fingerprint beside the command's result (its `commands` log) to
tell a retry from a key reused for another request. A request body can hold an ID number and a
phone, which have few enough plausible values that a plain hash of the body would give them back
to anyone who reads the database and tries them all. So the fingerprint is an HMAC-SHA256 under
a key only the gateway holds: derived with HKDF from JWT_SECRET, the gateway's one secret, which
no database holds. (Rotating JWT_SECRET also changes every fingerprint: a retry of a request sent
before the rotation is refused as a different request, and the client, who must sign in again
anyway, sends it with a new key.)"""

import hashlib
import hmac
import json
from functools import lru_cache
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Request


@lru_cache(maxsize=4)
def fingerprint_key(jwt_secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"partybuilding/idempotency-fingerprint/v1").derive(jwt_secret.encode())


def canonical_request(method: str, path: str, query_items: list[tuple[str, str]], body: bytes) -> bytes:
    """Method, path, query and body, the body as parsed JSON so that formatting does not count."""
    try:
        body = json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False).encode() if body else b""
    except ValueError:
        pass  # not JSON: FastAPI refuses it before the command runs anyway
    query = urlencode(sorted(query_items))  # parameter order does not count
    return f"{method} {path}?{query}\n".encode() + body


async def request_fingerprint(request: Request) -> str:
    canonical = canonical_request(request.method, request.url.path, request.query_params.multi_items(),
                                  await request.body())
    key = fingerprint_key(request.app.state.settings.jwt_secret)
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()
