"""Live events for frontends: Server-Sent Events (resumable) and WebSocket. Any role may listen:
admins and operators get the events of their division scope, and everyone the notifications
addressed to them."""

import asyncio
import collections
import contextlib
import json
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from starlette.requests import HTTPConnection
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from platform_contracts.actors import DIVISION_ROLES
from platform_contracts.errors import DomainError

from . import API
from ..auth import Principal
from ..deps import authenticate, stream_principal
from ..fanout import Broadcaster, StreamGap, Subscription
from ..metrics import STREAM_CLIENTS
from ..problems import ApiProblem, domain_problem, problem
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


MAX_EVENT_ID = 2**63 - 1  # the log's positions are 64-bit integers


def parse_last_event_id(value, loc: list) -> int | None:
    """Only ASCII digits of a 64-bit position: `str.isdigit` also takes "²", which int() refuses."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= len(str(MAX_EVENT_ID)):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EVENT_ID:
        raise ApiProblem.invalid(loc, "must be an event id (a non-negative integer) from a previous event")
    return value


def presented_token(request: Request) -> str | None:
    """The token the stream was opened with, as `stream_principal` took it, to check it again."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return request.query_params.get("access_token")


async def rights_lost(connection: HTTPConnection, token: str | None, principal: Principal) -> ApiProblem | None:
    """Why a stream opened as `principal` must end now: the token expired or was revoked, the
    account was deactivated (401), or its role or scope changed (403: the filter was made for
    the old ones); None while it may go on."""
    try:
        current = await authenticate(connection, token)
    except ApiProblem as exc:
        return exc
    if current.actor.to_wire() != principal.actor.to_wire():
        return ApiProblem.of(403, "your role or scope changed: open the stream again to get what you may see now")
    return None


def too_many_streams(limit: int) -> ApiProblem:
    return ApiProblem(problem(429, f"at most {limit} live-event streams per user at a time: close one first",
                              title="Too many requests"), headers={"Retry-After": "5"})


CLOSED_EVENT = "stream.closed"  # not a CloudEvent: the stream's last word when the reader lost the right to it


@router.get("/stream", response_class=EventSourceResponse, summary="Server-Sent Events, resumable",
            responses={200: {"content": {"text/event-stream": {}}, "description": (
                "`id:` the log position, `event:` the CloudEvent type, `data:` the CloudEvent JSON. When the "
                "token expires or is revoked, the account is deactivated or its role or scope changes, a last "
                f"`event: {CLOSED_EVENT}` carries the problem (401 or 403) and the stream ends")},
                       401: {"description": "no valid token, or an inactive account"},
                       422: {"description": "a malformed filter or Last-Event-ID"},
                       429: {"description": "the user already has STREAM_MAX_PER_USER streams open"}})
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
    settings = request.app.state.settings
    broadcaster: Broadcaster = request.app.state.broadcaster
    if not broadcaster.open_stream(principal.id, settings.stream_max_per_user):
        raise too_many_streams(settings.stream_max_per_user)
    subscription = broadcaster.subscribe(event_filter)
    token = presented_token(request)
    ended_by: list[ApiProblem] = []

    async def watch_rights():
        while True:
            await asyncio.sleep(settings.stream_recheck_seconds)
            if lost := await rights_lost(request, token, principal):
                ended_by.append(lost)
                subscription.end()
                return

    async def frames():
        STREAM_CLIENTS.labels("sse").inc()
        watcher = asyncio.create_task(watch_rights())
        try:
            async for entry in broadcaster.stream(subscription, last_event_id):
                if subscription.ended:
                    break
                if isinstance(entry, StreamGap):
                    yield ServerSentEvent(id=str(entry.resumed_after), event=GAP_EVENT,
                                          data=json.dumps(gap_notice(entry)))
                    continue
                yield ServerSentEvent(id=str(entry.seq), event=entry.type,
                                      data=json.dumps(envelope_for(entry, principal), ensure_ascii=False))
            if ended_by:
                yield ServerSentEvent(event=CLOSED_EVENT, data=json.dumps(ended_by[0].document))
        finally:
            watcher.cancel()
            STREAM_CLIENTS.labels("sse").dec()

    async def release():  # also when the client left before the stream began
        broadcaster.unsubscribe(subscription)
        broadcaster.close_stream(principal.id)

    # A client that stops reading is dropped once a send has waited this long.
    return EventSourceResponse(frames(), ping=KEEPALIVE_SECONDS, send_timeout=settings.stream_send_timeout_seconds,
                               background=BackgroundTask(release))


@router.websocket("/ws")
async def event_socket(websocket: WebSocket, access_token: str | None = None):
    """Send `{"subscribe": {"types": [...], "division": "...", "last_event_id": n}}` (again
    to change the filter, at most STREAM_SUBSCRIBES_PER_MINUTE times a minute); receive
    `{"subscribed": {...}}`, then `{"id": n, "event": {...}}` per event. Errors arrive as
    `{"error": <problem>}`. Closes with 4401 for a missing, expired or revoked token or a
    deactivated account (checked again every STREAM_RECHECK_SECONDS), 4403 when the account's
    role or scope changes, 4429 beyond STREAM_MAX_PER_USER streams, 1008 for a client that
    stops reading, 1013 for one that fell too far behind."""
    await websocket.accept()
    try:
        principal = await authenticate(websocket, access_token)
    except ApiProblem as exc:
        await websocket.send_json({"error": exc.document})
        await websocket.close(code=4000 + exc.status, reason=exc.document["title"])
        return
    settings = websocket.app.state.settings
    broadcaster: Broadcaster = websocket.app.state.broadcaster
    if not broadcaster.open_stream(principal.id, settings.stream_max_per_user):
        refusal = too_many_streams(settings.stream_max_per_user)
        await websocket.send_json({"error": refusal.document})
        await websocket.close(code=4429, reason=refusal.document["title"])
        return
    STREAM_CLIENTS.labels("websocket").inc()
    try:
        await SocketSession(websocket, access_token, principal, broadcaster, settings).run()
    finally:
        STREAM_CLIENTS.labels("websocket").dec()
        broadcaster.close_stream(principal.id)


class RightsLost(Exception):
    def __init__(self, problem_now: ApiProblem):
        super().__init__(problem_now.document["detail"])
        self.problem = problem_now


class SocketSession:
    def __init__(self, websocket: WebSocket, token: str | None, principal: Principal, broadcaster: Broadcaster,
                 settings):
        self.websocket = websocket
        self.token = token
        self.principal = principal
        self.broadcaster = broadcaster
        self.settings = settings
        self.last_sent: int | None = None
        self.subscribed_at: collections.deque[float] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._pump: asyncio.Task | None = None
        self._closing: asyncio.Future = asyncio.get_running_loop().create_future()

    async def send(self, message: dict) -> None:
        """TimeoutError when the client has not taken the message within the send timeout."""
        async with self._send_lock:
            await asyncio.wait_for(self.websocket.send_json(message), self.settings.stream_send_timeout_seconds)

    def end(self, code: int, reason: str, problem_document: dict | None = None) -> None:
        if not self._closing.done():
            self._closing.set_result((code, reason, problem_document))

    async def run(self) -> None:
        receiver = asyncio.create_task(self._receive())
        watcher = asyncio.create_task(self._watch_rights())
        try:
            await asyncio.wait({receiver, watcher, self._closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, watcher):
                task.cancel()
            await asyncio.gather(receiver, watcher, return_exceptions=True)
            await self._stop_pump()
        if self._closing.done():
            await self._close(*self._closing.result())

    async def _close(self, code: int, reason: str, problem_document: dict | None) -> None:
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError):
            if problem_document is not None:
                await self.send({"error": problem_document})
            await asyncio.wait_for(self.websocket.close(code=code, reason=reason),
                                   self.settings.stream_send_timeout_seconds)

    def _end_for(self, lost: ApiProblem) -> None:
        self.end(4000 + lost.status, lost.document["title"], lost.document)

    async def _watch_rights(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stream_recheck_seconds)
            if lost := await rights_lost(self.websocket, self.token, self.principal):
                self._end_for(lost)
                return

    async def _receive(self) -> None:
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
        except RightsLost as exc:
            self._end_for(exc.problem)
        except TimeoutError:
            self.end(1008, "not reading: a send timed out")

    def _count_subscribe(self) -> None:
        now = time.monotonic()
        while self.subscribed_at and self.subscribed_at[0] <= now - 60:
            self.subscribed_at.popleft()
        limit = self.settings.stream_subscribes_per_minute
        if len(self.subscribed_at) >= limit:
            raise ApiProblem(problem(429, f"at most {limit} subscribes a minute: wait before subscribing again",
                                     title="Too many requests"))
        self.subscribed_at.append(now)

    async def subscribe(self, text: str) -> None:
        self._count_subscribe()  # each one may replay from the log: not for free
        try:
            message = json.loads(text)
        except ValueError:
            raise ApiProblem.of(400, "a message is a JSON object") from None
        request = message.get("subscribe") if isinstance(message, dict) else None
        if not isinstance(request, dict):
            raise ApiProblem.invalid(["subscribe"], 'send {"subscribe": {"types": [...], "division": "..."}}')
        # The account's rights now, not at connect: a narrowed scope narrows the new filter.
        try:
            self.principal = await authenticate(self.websocket, self.token)
        except ApiProblem as exc:
            raise RightsLost(exc) from None
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
        self._pump = asyncio.create_task(self._forward(subscription, last_event_id, self.principal))

    async def _forward(self, subscription: Subscription, last_event_id: int | None, principal: Principal) -> None:
        try:
            async for entry in self.broadcaster.stream(subscription, last_event_id):
                if isinstance(entry, StreamGap):
                    await self.send({"gap": gap_notice(entry)})
                    self.last_sent = entry.resumed_after
                    continue
                await self.send({"id": entry.seq, "event": envelope_for(entry, principal)})
                self.last_sent = entry.seq
        except TimeoutError:
            self.end(1008, "not reading: a send timed out")
            return
        # The stream ended: this client fell too far behind, or the gateway is stopping.
        self.end(1013, "resubscribe with last_event_id")

    async def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
