"""The organization service, as other services ask it: is a division in a district registered
on the platform? The organization service owns the division registry (GET/POST /divisions) and
publishes no event when a district is registered, so it is asked over RPC before a
registration's transaction opens (a transaction must not wait on another service), as the
member service asks it about organizations. Districts are registered rarely and never removed:
a registered one is remembered for the life of the process, so a station registration in a
known district asks nothing."""

import os

import eventlet
from nameko.exceptions import UnknownService, get_module_path, registry

from platform_contracts.errors import InvalidValue, Unavailable
from platform_contracts.problems import Rejected

# The organization service refuses with Rejected; let it arrive here as Rejected.
registry[get_module_path(Rejected)] = Rejected

# Listing divisions is anyone's right; the asking service checks its own callers.
SYSTEM_ACTOR = {"username": "platform-service", "role": "admin", "scope": None}

# nameko's RpcProxy waits for a reply for ever: a worker must not.
RPC_TIMEOUT_SECONDS = float(os.environ.get("ORGANIZATION_RPC_TIMEOUT_SECONDS", 5))

_KNOWN_DISTRICTS: set[str] = set()


def _registered_districts(proxy) -> set[str]:
    try:
        with eventlet.Timeout(RPC_TIMEOUT_SECONDS):
            answer = proxy.list_divisions(actor=SYSTEM_ACTOR)
    except eventlet.Timeout:
        raise Unavailable("the organization service did not answer in time; nothing was changed, "
                          "try again shortly") from None
    except UnknownService:
        raise Unavailable("the organization service is not running; nothing was changed, try again shortly") from None
    return {d["code"] for d in answer["items"] if len(d["code"]) == 6}


def ensure_registered(proxy, division: str, field: str = "division") -> None:
    """InvalidValue naming `field` unless `division` lies in a registered district."""
    district = division[:6]
    if district in _KNOWN_DISTRICTS:
        return
    _KNOWN_DISTRICTS.update(_registered_districts(proxy))
    if district not in _KNOWN_DISTRICTS:
        raise InvalidValue(field, f"unknown division: district {district} is not registered on this platform")
