"""Live events for frontends: Server-Sent Events (resumable) and WebSocket. Any role may listen:
admins and operators get the events of their division scope, and everyone the notifications
addressed to them."""

import asyncio
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from platform_contracts.actors import DIVISION_ROLES
from platform_contracts.errors import DomainError

from . import API
from ..auth import Principal
from ..deps import authenticate, stream_principal
from ..fanout import Broadcaster, StreamGap, Subscription
from ..metrics import STREAM_CLIENTS
from ..problems import ApiProblem, domain_problem
from ..stream_filter import EventFilter, envelope_for, parse_division, parse_types

log = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API}/events", tags=["events"])

KEEPALIVE_SECONDS = 15


def client_filter(principal: Principal, types, division, loc: str) -> EventFilter:
    """The caller's filter: an operator only ever sees their own division scope; for the other
    roles (only their notifications) a division just narrows what they asked for."""
    try:
        patterns = parse_types(types)
    except ValueError as exc:
        raise ApiProblem.invalid([loc, "types"], str(exc)) from None
    try:
        requested = parse_division(division)
    except ValueError as exc:
        raise ApiProblem.invalid([loc, "division"], str(exc)) from None
    if principal.actor.role in DIVISION_ROLES:
        requested = principal.actor.narrow_division(requested)
    return EventFilter(types=patterns, division=requested, reader=principal)


GAP_EVENT = "stream.gap"  # not a CloudEvent: the stream's own word that events were missed


def gap_notice(gap: StreamGap) -> dict:
    return {"last_event_id": gap.last_event_id, "resumed_after": gap.resumed_after,
            "detail": "events after last_event_id are past the event log's retention and were not sent; "
                      "reload the current state (e.g. GET /api/v1/coverage) before applying further events"}


def parse_last_event_id(value, loc: list) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not str(value).isdigit():
        raise ApiProblem.invalid(loc, "must be an event id (a non-negative integer) from a previous event")
    return int(value)


@router.get("/stream", response_class=EventSourceResponse, summary="Server-Sent Events, resumable",
            responses={200: {"content": {"text/event-stream": {}}, "description": (
                "`id:` the log position, `event:` the CloudEvent type, `data:` the CloudEvent JSON")}})
async def event_stream(
    request: Request,
    principal: Annotated[Principal, Depends(stream_principal)],
    types: Annotated[str | None, Query(description="comma-separated glob patterns: organization.*,coverage.*")] = None,
    division: Annotated[str | None, Query(description="division code prefix, e.g. 3701")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id")] = None,
):
    event_filter = client_filter(principal, types, division, "query")
    if last_event_id_header not in (None, ""):
        last_event_id = parse_last_event_id(last_event_id_header, ["header", "Last-Event-ID"])
    else:
        last_event_id = parse_last_event_id(last_event_id_query, ["query", "last_event_id"])
    broadcaster: Broadcaster = request.app.state.broadcaster
    subscription = broadcaster.subscribe(event_filter)

    async def frames():
        STREAM_CLIENTS.labels("sse").inc()
        try:
            async for entry in broadcaster.stream(subscription, last_event_id):
                if isinstance(entry, StreamGap):
                    yield ServerSentEvent(id=str(entry.resumed_after), event=GAP_EVENT,
                                          data=json.dumps(gap_notice(entry)))
                    continue
                yield ServerSentEvent(id=str(entry.seq), event=entry.type,
                                      data=json.dumps(envelope_for(entry, principal), ensure_ascii=False))
        finally:
            STREAM_CLIENTS.labels("sse").dec()

    async def release():  # also when the client left before the stream began
        broadcaster.unsubscribe(subscription)

    return EventSourceResponse(frames(), ping=KEEPALIVE_SECONDS, background=BackgroundTask(release))


@router.websocket("/ws")
async def event_socket(websocket: WebSocket, access_token: str | None = None):
    """Send `{"subscribe": {"types": [...], "division": "...", "last_event_id": n}}` (again
    to change the filter); receive `{"subscribed": {...}}`, then `{"id": n, "event": {...}}`
    per event. Errors arrive as `{"error": <problem>}`; auth failures close with 4401."""
    await websocket.accept()
    try:
        principal = await authenticate(websocket, access_token)
    except ApiProblem as exc:
        await websocket.send_json({"error": exc.document})
        await websocket.close(code=4000 + exc.status, reason=exc.document["title"])
        return
    STREAM_CLIENTS.labels("websocket").inc()
    try:
        await SocketSession(websocket, principal, websocket.app.state.broadcaster).run()
    finally:
        STREAM_CLIENTS.labels("websocket").dec()


class SocketSession:
    def __init__(self, websocket: WebSocket, principal: Principal, broadcaster: Broadcaster):
        self.websocket = websocket
        self.principal = principal
        self.broadcaster = broadcaster
        self.last_sent: int | None = None
        self._send_lock = asyncio.Lock()
        self._pump: asyncio.Task | None = None

    async def send(self, message: dict) -> None:
        async with self._send_lock:
            await self.websocket.send_json(message)

    async def run(self) -> None:
        try:
            while True:
                text = await self.websocket.receive_text()
                try:
                    await self.subscribe(text)
                except ApiProblem as exc:
                    await self.send({"error": exc.document})
                except DomainError as exc:  # the subscribe message is where its fields came from
                    await self.send({"error": domain_problem(exc, lambda field: ["subscribe", *field])})
        except WebSocketDisconnect:
            pass
        finally:
            await self._stop_pump()

    async def subscribe(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            raise ApiProblem.of(400, "a message is a JSON object") from None
        request = message.get("subscribe") if isinstance(message, dict) else None
        if not isinstance(request, dict):
            raise ApiProblem.invalid(["subscribe"], 'send {"subscribe": {"types": [...], "division": "..."}}')
        event_filter = client_filter(self.principal, request.get("types"), request.get("division"), "subscribe")
        last_event_id = parse_last_event_id(request.get("last_event_id"), ["subscribe", "last_event_id"])
        # A re-subscription without a position carries on from the last event sent: no gap.
        if last_event_id is None:
            last_event_id = self.last_sent
        await self._stop_pump()
        subscription = self.broadcaster.subscribe(event_filter)
        try:
            await self.send({"subscribed": {"types": list(event_filter.types), "division": event_filter.division,
                                            "last_event_id": last_event_id}})
        except BaseException:
            self.broadcaster.unsubscribe(subscription)
            raise
        self._pump = asyncio.create_task(self._forward(subscription, last_event_id))

    async def _forward(self, subscription: Subscription, last_event_id: int | None) -> None:
        async for entry in self.broadcaster.stream(subscription, last_event_id):
            if isinstance(entry, StreamGap):
                await self.send({"gap": gap_notice(entry)})
                self.last_sent = entry.resumed_after
                continue
            await self.send({"id": entry.seq, "event": envelope_for(entry, self.principal)})
            self.last_sent = entry.seq
        # The stream ended: this client fell too far behind, or the gateway is stopping.
        await self.websocket.close(code=1013, reason="resubscribe with last_event_id")

    async def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
