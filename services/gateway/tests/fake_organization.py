"""A stand-in for the organization service, run with `nameko run` in the tests' own vhost: it
answers the RPCs the gateway routes call, records what it was sent, and raises Rejected or a
plain error on request, so the gateway's side of the protocol is tested on its own. It
verifies the actors it is sent as a real service does, and records them verified."""

import os
import time
from datetime import datetime, timezone

from nameko.rpc import rpc

from platform_contracts.problems import Rejected
from service_kit.actor_tokens import ActorVerifier

# ACTOR_PUBLIC_KEYS comes from the test process (platform_testing.actors.actor_env).
VERIFIER = ActorVerifier.from_config("organization", ["gateway"], os.environ)


def verified(token, method: str) -> dict:
    return VERIFIER.verify(token, method).to_wire()

CALLS: list[dict] = []
RESULTS_BY_COMMAND: dict[str, dict] = {}


def unit_from(command: dict, unit_id: str) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return {**command, "id": unit_id, "coverage": "none", "should_establish": False, "status": "active",
            "registered_at": now, "updated_at": now}


class FakeOrganization:
    name = "organization"

    @rpc
    def register_unit(self, command, actor, command_id):
        CALLS.append({"method": "register_unit", "command": command, "actor": verified(actor, "register_unit"),
                      "command_id": command_id})
        key = command_id["key"] if isinstance(command_id, dict) else command_id
        if key not in RESULTS_BY_COMMAND:  # the first result for a repeated command id
            RESULTS_BY_COMMAND[key] = unit_from(command, f"u{len(RESULTS_BY_COMMAND) + 1}")
        return RESULTS_BY_COMMAND[key]

    @rpc
    def get_unit(self, unit_id, actor):
        CALLS.append({"method": "get_unit", "unit_id": unit_id, "actor": verified(actor, "get_unit")})
        if unit_id == "missing":
            raise Rejected.not_found("unit", unit_id)
        if unit_id == "conflict":
            raise Rejected.invalid(["body", "organization_ids", 0], "organization is dissolved")
        if unit_id == "boom":
            raise RuntimeError("internal detail: connection string mongodb://secret")
        if unit_id == "slow":
            time.sleep(3)  # a slow service on purpose: the gateway's timeout is what the test watches
        return unit_from({"credit_code": "91370113000000000X", "name": "n", "type": "enterprise",
                          "industry": "快递", "division": "370113", "employees": 1}, unit_id)

    @rpc
    def list_units(self, filters, limit, cursor, actor):
        CALLS.append({"method": "list_units", "filters": filters, "limit": limit, "cursor": cursor,
                      "actor": verified(actor, "list_units")})
        return {"items": [], "next_cursor": None}

    @rpc
    def last_call(self):
        return CALLS[-1] if CALLS else None
