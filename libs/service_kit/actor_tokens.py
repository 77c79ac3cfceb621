"""Signed actors: who an RPC is for, as its caller vouches for it.

The gateway authenticates people and passes each RPC the actor (username, role, scope) the
service must authorize. Anyone who could publish on the broker could otherwise claim to be an
admin, so the actor travels as a token signed by its caller and the service verifies it before
anything else runs:

- Ed25519 (EdDSA JWTs): a service holds public keys only, so it can check a caller but never
  speak as one; a service that calls another (member asks organization) signs with a key of
  its own, and only the services the registry says it calls trust that key.
- Each token names its audience (the service) and its method, and lives about a minute (more
  than any caller's RPC timeout): one captured on its way to one method of one service is
  worth nothing elsewhere, or later.

Keys are raw 32-byte Ed25519 keys in base64: a process's own private key in
ACTOR_SIGNING_KEY, every issuer's public key in ACTOR_PUBLIC_KEYS ("gateway=<key>,member=<key>").
`generate_keyring` makes a set for `make run` and the tests; deploy/README.md gives the
commands for production."""

import base64
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from platform_contracts.actors import Actor
from platform_contracts.errors import Forbidden

SIGNING_KEY_ENV = "ACTOR_SIGNING_KEY"
PUBLIC_KEYS_ENV = "ACTOR_PUBLIC_KEYS"
GATEWAY = "gateway"
ALGORITHM = "EdDSA"
TOKEN_TTL_SECONDS = 60
CLOCK_LEEWAY_SECONDS = 5


class ActorRefused(Forbidden):
    """The RPC's actor is missing, unsigned, forged, expired or meant for another call;
    `reason` is the metric's label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"the caller is not vouched for: {detail}")
        self.reason = reason


# ---- keys ------------------------------------------------------------------------------------

def _raw(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (ValueError, AttributeError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must decode to 32 bytes (a raw Ed25519 key), not {len(raw)}")
    return raw


def private_key(value: str | None) -> Ed25519PrivateKey:
    if not value:
        raise ValueError(f"{SIGNING_KEY_ENV} is not set")
    return Ed25519PrivateKey.from_private_bytes(_raw(value, SIGNING_KEY_ENV))


def public_keys(value: str | None) -> dict[str, Ed25519PublicKey]:
    """ACTOR_PUBLIC_KEYS parsed: issuer -> key."""
    keys = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        issuer, separator, key = item.partition("=")
        if not separator or not issuer.strip():
            raise ValueError(f"{PUBLIC_KEYS_ENV} entries are issuer=<base64 key>, not {item!r}")
        keys[issuer.strip()] = Ed25519PublicKey.from_public_bytes(_raw(key, f"{PUBLIC_KEYS_ENV}[{issuer.strip()}]"))
    return keys


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def generate_keyring(issuers: Iterable[str]) -> tuple[dict[str, str], str]:
    """A fresh key per issuer: ({issuer: ACTOR_SIGNING_KEY}, ACTOR_PUBLIC_KEYS)."""
    private, public = {}, []
    for issuer in issuers:
        key = Ed25519PrivateKey.generate()
        private[issuer] = _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
        public.append(f"{issuer}={_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))}")
    return private, ",".join(public)


# ---- signing and verifying -------------------------------------------------------------------

@dataclass(frozen=True)
class ActorSigner:
    issuer: str
    key: Ed25519PrivateKey

    @classmethod
    def from_config(cls, issuer: str, config: Mapping) -> "ActorSigner":
        return cls(issuer, private_key(config.get(SIGNING_KEY_ENV)))

    def sign(self, actor: Actor | dict, audience: str, method: str, now: float | None = None) -> str:
        wire = actor.to_wire() if isinstance(actor, Actor) else Actor.parse(actor).to_wire()
        issued = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "aud": audience, "act": method, "sub": wire["username"],
                  "role": wire["role"], "scope": wire["scope"], "iat": issued, "exp": issued + TOKEN_TTL_SECONDS}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.issuer})


@dataclass(frozen=True)
class ActorVerifier:
    """Verifies the actors service `audience` is called with; trusts only `trusted` issuers."""

    audience: str
    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_config(cls, audience: str, trusted: Iterable[str], config: Mapping) -> "ActorVerifier":
        known = public_keys(config.get(PUBLIC_KEYS_ENV))
        missing = [issuer for issuer in trusted if issuer not in known]
        if missing:
            raise ValueError(f"{PUBLIC_KEYS_ENV} has no key for {', '.join(missing)}, which {audience} must trust")
        return cls(audience, {issuer: known[issuer] for issuer in trusted})

    def verify(self, token, method: str) -> Actor:
        if not isinstance(token, str):
            raise ActorRefused("unsigned", "the actor is not a signed token")
        try:
            issuer = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise ActorRefused("malformed", "the actor token is malformed") from None
        key = self.keys.get(issuer) if isinstance(issuer, str) else None
        if key is None:
            raise ActorRefused("untrusted_issuer", f"{self.audience} does not take callers from {issuer!r}")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=issuer,
                                leeway=CLOCK_LEEWAY_SECONDS,
                                options={"require": ["iss", "aud", "act", "sub", "role", "iat", "exp"]})
        except jwt.ExpiredSignatureError:
            raise ActorRefused("expired", "the actor token has expired") from None
        except jwt.InvalidAudienceError:
            raise ActorRefused("wrong_audience", f"the actor token is for another service, not {self.audience}") from None
        except jwt.InvalidSignatureError:
            raise ActorRefused("bad_signature", "the actor token's signature does not verify") from None
        except jwt.InvalidTokenError as error:
            raise ActorRefused("invalid", f"the actor token is not valid ({error})") from None
        if claims["act"] != method:
            raise ActorRefused("wrong_method", f"the actor token is for {claims['act']!r}, not {method!r}")
        return Actor.parse({"username": claims["sub"], "role": claims["role"], "scope": claims.get("scope")})


class SigningProxy:
    """An RPC proxy whose calls carry their `actor` signed: `SigningProxy(cluster_proxy, signer)`
    for `proxy.<service>.<method>(...)`, `SigningProxy(service_proxy, signer, audience=<service>)`
    for `proxy.<method>(...)`. A call given an actor (an Actor or its wire dict) sends a token
    for that service and method; a token or no actor goes as it is."""

    def __init__(self, target, signer: ActorSigner, audience: str | None = None):
        self._target, self._signer, self._audience = target, signer, audience

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._audience is None:
            return SigningProxy(getattr(self._target, name), self._signer, audience=name)
        return _SignedMethod(getattr(self._target, name), self._signer, self._audience, name)

    def __getitem__(self, name: str):
        return self.__getattr__(name)


class _SignedMethod:
    def __init__(self, method, signer: ActorSigner, audience: str, name: str):
        self._method, self._signer, self._audience, self._name = method, signer, audience, name

    def _signed(self, kwargs: dict) -> dict:
        actor = kwargs.get("actor")
        if isinstance(actor, (Actor, dict)):
            kwargs = {**kwargs, "actor": self._signer.sign(actor, self._audience, self._name)}
        return kwargs

    def __call__(self, *args, **kwargs):
        return self._method(*args, **self._signed(kwargs))

    def call_async(self, *args, **kwargs):
        return self._method.call_async(*args, **self._signed(kwargs))
