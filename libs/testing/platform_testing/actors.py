"""The test session's actor keys (service_kit.actor_tokens): one key per issuer — the gateway
and every registry service — made once per test process. Services the kit starts get the
public keys and their own signing key; the kit's RPC proxies sign as the gateway does, so a
test passes `actor={...}` as a plain dict and the service receives it signed."""

from service_kit import registry
from service_kit.actor_tokens import (
    GATEWAY, PUBLIC_KEYS_ENV, SIGNING_KEY_ENV, ActorSigner, SigningProxy, generate_keyring, private_key,
)

_SIGNING_KEYS, PUBLIC_KEYS = generate_keyring([GATEWAY, *(e.name for e in registry.nameko_services())])


def actor_env(issuer: str = GATEWAY) -> dict:
    """The variables a process signing as `issuer` (and verifying everyone) runs with."""
    return {PUBLIC_KEYS_ENV: PUBLIC_KEYS, SIGNING_KEY_ENV: _SIGNING_KEYS.get(issuer, "")}


def signer(issuer: str = GATEWAY) -> ActorSigner:
    return ActorSigner(issuer, private_key(_SIGNING_KEYS[issuer]))


def signing(proxy, audience: str | None = None, issuer: str = GATEWAY) -> SigningProxy:
    """`proxy` (a cluster proxy, or one service's with `audience`) signing actors as `issuer`."""
    return SigningProxy(proxy, signer(issuer), audience=audience)


def platform_env() -> dict:
    """The keys for `make run` (scripts/run_platform.py) to give each process, so that the
    kit's proxies can call the platform it starts."""
    env = {PUBLIC_KEYS_ENV: PUBLIC_KEYS}
    for entry in registry.load().values():
        env[f"{entry.env_prefix}_{SIGNING_KEY_ENV}"] = _SIGNING_KEYS[entry.name]
    return env


def vouched(actor, method: str, audience: str = "organization", issuer: str = GATEWAY) -> str:
    """`actor` as `issuer` signs it for `audience`'s `method`: for tests that call an
    entrypoint as a function (its service's `callers` being `verifier(audience)`)."""
    return signer(issuer).sign(actor, audience, method)


def verifier(audience: str = "organization", trusted: tuple[str, ...] = (GATEWAY,)):
    from service_kit.actor_tokens import ActorVerifier

    return ActorVerifier.from_config(audience, trusted, {PUBLIC_KEYS_ENV: PUBLIC_KEYS})
