"""Shared by the gateway's tests: starting a gateway process, building and publishing events."""

import json
import pathlib
import uuid
from datetime import datetime, timezone

import aio_pika
import httpx

from platform_contracts.events import validate_event
from platform_testing import ServiceProcess, free_port
from platform_testing.actors import actor_env


def community() -> str:
    """A fresh community code in Jinan (3701..), so each test's events are its own."""
    return f"370113{uuid.uuid4().int % 10**6:06d}"


def valid(event: dict) -> dict:
    """Fail here, clearly, if the shared catalogue no longer accepts what a test builds."""
    validate_event(event)
    return event


def alert_event(division: str, type_: str = "coverage.alert_cleared", event_id: str | None = None) -> dict:
    """A coverage alert; by default one that notifies nobody, so streams carry only it."""
    return valid({
        "specversion": "1.0", "id": event_id or uuid.uuid4().hex, "source": "organization", "type": type_,
        "time": datetime.now(timezone.utc).isoformat(), "subject": "u1", "datacontenttype": "application/json",
        "division": division, "correlationid": uuid.uuid4().hex, "causationid": None,
        "data": {"unit_id": "u1", "unit_name": "顺丰速运", "division": division, "full_members": 3,
                 "reason": "3 full members and no standalone organization"},
    })


def figures(division: str | None, units: int) -> dict:
    return {"division": division, "units": units, "organization_covered": 0, "work_covered": 0, "uncovered": units,
            "organization_rate": 0.0, "work_rate": 0.0, "standalone_units": 0, "standalone_rate": 0.0,
            "should_establish": 0}


def coverage_changed_event(division: str) -> dict:
    """A coverage.changed for a community, with the figures of every division above it, as the
    organization service reports them."""
    levels = [None, division[:2], division[:4], division[:6], division[:9], division]
    return valid({
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": "organization", "type": "coverage.changed",
        "time": datetime.now(timezone.utc).isoformat(), "subject": division, "datacontenttype": "application/json",
        "division": division, "correlationid": uuid.uuid4().hex, "causationid": None,
        "data": {"division": division, "before": figures(division, 0), "after": figures(division, 1),
                 "cause": "unit.registered",
                 "scopes": [{"division": d, "before": figures(d, 0), "after": figures(d, 1)} for d in levels]},
    })


def transfer_event(step: str, transfer: dict, event_id: str | None = None) -> dict:
    """A `transfer.<step>` as the member service emits it; `transfer` holds the transfer's ids
    and divisions (as its data carries them). The envelope's division is the side to act next."""
    division = transfer["to_division"] if step in ("approved", "received", "completed") else transfer["from_division"]
    return valid({
        "specversion": "1.0", "id": event_id or uuid.uuid4().hex, "source": "member", "type": f"transfer.{step}",
        "time": datetime.now(timezone.utc).isoformat(), "subject": transfer["transfer_id"],
        "datacontenttype": "application/json", "division": division, "correlationid": uuid.uuid4().hex,
        "causationid": None, "data": {**transfer, "status": step, "by": "someone", "note": None},
    })


def new_transfer(from_division: str, to_division: str) -> dict:
    return {"transfer_id": uuid.uuid4().hex, "member_id": uuid.uuid4().hex,
            "from_organization_id": uuid.uuid4().hex, "to_organization_id": uuid.uuid4().hex,
            "from_unit_id": None, "to_unit_id": None, "from_division": from_division, "to_division": to_division}


def station_event(division: str) -> dict:
    """An event from another source (another exchange) than the organization service."""
    now = datetime.now(timezone.utc).isoformat()
    station = {"id": "s1", "name": "暖新驿站", "kind": "warm_station", "division": division, "address": "经十路 1 号",
               "location": {"lng": 117.0, "lat": 36.65}, "location_gcj02": {"lng": 117.006, "lat": 36.651},
               "opening_hours": "24/7", "open_now": True, "amenities": ["water"], "manager": None, "capacity": 10,
               "supplies": [], "status": "active", "version": 2, "registered_at": now, "updated_at": now,
               "changed": ["capacity"]}
    return valid({"specversion": "1.0", "id": uuid.uuid4().hex, "source": "service-station", "type": "station.updated",
                  "time": now, "division": division, "subject": "s1", "data": station})


async def publish(amqp_uri: str, *events, exchange: str | None = None) -> None:
    """Publish as a service's outbox relay does: to `<source>.events`, routing key = type."""
    connection = await aio_pika.connect(amqp_uri)
    async with connection:
        channel = await connection.channel()
        for event in events:
            body = event if isinstance(event, bytes) else json.dumps(event).encode()
            name = exchange or f"{event['source']}.events"
            target = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
            routing_key = "garbage" if isinstance(event, bytes) else event["type"]
            await target.publish(aio_pika.Message(body, content_type="application/json"), routing_key=routing_key)


ADMIN_PASSWORD = "admin-password-for-tests"
JWT_SECRET = "gateway-tests-jwt-secret-of-at-least-32-bytes"
UNLIMITED = "1000000/minute"


class Gateway:
    def __init__(self, process: ServiceProcess, amqp_uri: str, env: dict):
        self.process = process
        self.amqp_uri = amqp_uri
        self.env = env
        self.url = f"http://127.0.0.1:{process.http_port}"

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def async_client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15)

    def token(self, username: str, password: str) -> str:
        with self.client() as client:
            response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


def start_gateway(mongodb_uri: str, amqp_uri: str, log_dir: pathlib.Path, **extra_env) -> Gateway:
    port = free_port()
    env = {
        "MONGODB_URI": mongodb_uri, "MONGODB_GATEWAY_DB": "gateway_tests", "AMQP_URI": amqp_uri,
        "GATEWAY_PORT": str(port), "JWT_SECRET": JWT_SECRET, "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RPC_TIMEOUT_SECONDS": "2", "LOG_LEVEL": "INFO", **actor_env(),
        # Tests send bursts from one address and one account; test_rate_limits.py sets its own.
        "RATE_LIMIT_PER_USER": UNLIMITED, "RATE_LIMIT_PER_ADDRESS": UNLIMITED,
        # Appeal submissions too; test_appeal_guard.py sets its own.
        "APPEAL_SUBMISSIONS_PER_ACCOUNT": UNLIMITED, "APPEAL_SUBMISSIONS_PER_DEVICE": UNLIMITED,
        "APPEAL_SUBMISSIONS_PER_ADDRESS": UNLIMITED, "APPEAL_SUBMISSIONS_PER_API_KEY": UNLIMITED, **extra_env,
    }
    process = ServiceProcess("gateway", env, port, str(log_dir / f"gateway-{port}.log")).start()
    return Gateway(process, amqp_uri, env)
