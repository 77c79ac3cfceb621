"""Open311 GeoReport v2 at /open311/v2/ (CONTRACT.md: other interfaces), for the Open311
applications and tools that file and follow appeals: discovery, services, service definitions,
requests (POST with an API key; GET without), one request, tokens; each `.json` and `.xml`.

- jurisdiction_id is a district code (6 digits) of the platform's registered districts (the
  organization service's, cached for DISTRICTS_CACHE_SECONDS): an unknown one is a 404; none is
  a 400 while more than one district is served.
- Errors are Open311 error arrays in the format the path asks for (JSON, or XML, the format
  the specification requires), whatever raised them: this router's route class renders every
  error of its routes, the appeal service's problems included, with their HTTP status.
- These routes are outside /api/, where the general rate limit (rate_limit.py) applies, so they
  apply the same limits themselves, answering as Open311 does: POST requests counts against its
  API key (RATE_LIMIT_PER_USER, as an account), anything else against the client address
  (RATE_LIMIT_PER_ADDRESS). Submissions then pass the appeal guard (appeal_guard.py) as the
  account `open311:<key id>`.
- They are left out of /openapi.json: Open311 is their document, with its own error format."""

import hashlib
import hmac
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from platform_contracts.actors import Role
from platform_contracts.errors import DomainError

from .. import appeal_guard
from ..idempotency import canonical_request, fingerprint_key
from ..metrics import RATE_LIMITED
from ..problems import RETRY_AFTER_SECONDS, ApiProblem, domain_problem
from . import mapping
from .mapping import Open311Error, Params, value
from .render import FORMATS, errors_document, render
from .store import Open311Store

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
APPEAL, ORGANIZATION = "appeal", "organization"
DISTRICTS_CACHE_SECONDS = 30.0
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
PUBLIC_ACTOR = {"username": "open311:public", "role": Role.open311_client.value, "scope": "public"}


def key_actor(key_id: str) -> dict:
    return {"username": f"open311:{key_id}", "role": Role.open311_client.value, "scope": key_id}


# ---- errors as Open311 error arrays ----------------------------------------------------------

def response_format(request: Request) -> str:
    fmt = request.path_params.get("format")
    if fmt is None:  # no route matched: the path's own suffix
        fmt = request.url.path.rsplit(".", 1)[-1] if "." in request.url.path.rsplit("/", 1)[-1] else ""
    return "json" if fmt == "json" else "xml"


def error_response(request: Request, error: Open311Error) -> Response:
    body, media_type = render(response_format(request), "errors", errors_document(error.errors))
    headers = dict(error.headers or {})
    if error.status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return Response(body, status_code=error.status, media_type=media_type, headers=headers)


def as_open311_error(request: Request, exc: Exception) -> Open311Error:
    if isinstance(exc, Open311Error):
        return exc
    if isinstance(exc, ApiProblem):
        error = mapping.problem_errors(exc.document, getattr(request.state, "open311_given", None))
        error.headers = exc.headers
        return error
    if isinstance(exc, DomainError):
        return mapping.problem_errors(domain_problem(exc, lambda field: ["body", *field]))
    if isinstance(exc, RequestValidationError):
        return Open311Error(400, "the request is malformed")
    if isinstance(exc, HTTPException):
        return Open311Error(exc.status_code, str(exc.detail) if isinstance(exc.detail, str) else "request failed",
                            headers=getattr(exc, "headers", None))
    if isinstance(exc, PyMongoError):
        log.warning("MongoDB unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return Open311Error(503, "the gateway's database is unavailable; try again shortly")
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Open311Error(500, "the gateway failed to handle this request; it has been logged")


class Open311Route(APIRoute):
    """A route whose every error, from its dependencies, its handler or the services it
    calls, is answered as an Open311 error array (JSON or XML, as the path asks)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def open311_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error becomes an Open311 answer
                return error_response(request, as_open311_error(request, exc))

        return open311_handler


router = APIRouter(prefix=PREFIX, route_class=Open311Route, include_in_schema=False, tags=["open311"])


# ---- per-app state: the store, the limits, the districts served --------------------------------

class Open311State:
    def __init__(self, app_state):
        settings = app_state.settings
        self.store = Open311Store(app_state.db)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_key, self.per_address = parse(settings.rate_limit_per_user), parse(settings.rate_limit_per_address)
        self._districts: tuple[float, frozenset[str]] | None = None

    def limit(self, kind: str, who: str) -> None:
        """Open311Error 429 with Retry-After beyond the caller's limit (rate_limit.py's rule)."""
        limit = self.per_key if kind == "user" else self.per_address
        key = f"open311:{kind}:{who}"
        if self.limiter.hit(limit, key):
            return
        RATE_LIMITED.labels(kind).inc()
        retry_after = max(1, math.ceil(self.limiter.get_window_stats(limit, key).reset_time - time.time()))
        raise Open311Error(429, f"more than {limit} requests from this {'API key' if kind == 'user' else 'address'}: "
                                f"wait {retry_after} s", headers={"Retry-After": str(retry_after)})

    async def districts(self, rpc) -> frozenset[str]:
        now = time.monotonic()
        if self._districts is None or now - self._districts[0] > DISTRICTS_CACHE_SECONDS:
            answer = await rpc.call(ORGANIZATION, "list_divisions", actor=PUBLIC_ACTOR)
            codes = frozenset(d["code"] for d in answer.get("items", ()) if re.fullmatch(r"[0-9]{6}", d["code"]))
            self._districts = (now, codes)
        return self._districts[1]


def state(request: Request) -> Open311State:
    app_state = request.app.state
    found = getattr(app_state, "open311", None)
    if found is None:
        found = app_state.open311 = Open311State(app_state)
    return found


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise Open311Error(404, "format: this endpoint answers .json and .xml")


def answer(fmt: str, root: str, document: Any) -> Response:
    body, media_type = render(fmt, root, document)
    return Response(body, media_type=media_type)


async def jurisdiction(request: Request, params: Params) -> str:
    """The district jurisdiction_id names; 404 if it is not served, 400 if it is missing while
    more than one district is served."""
    districts = await state(request).districts(request.app.state.rpc)
    given = value(params, "jurisdiction_id")
    if given is None:
        if len(districts) == 1:
            return next(iter(districts))
        raise Open311Error(400, f"jurisdiction_id: is required: {len(districts)} districts are served here "
                                "(a 6-digit district code, e.g. 370113)")
    if given not in districts:
        raise Open311Error(404, "jurisdiction_id: not a district served here (a 6-digit district code, e.g. 370113)")
    return given


async def categories(request: Request, actor: dict) -> dict[str, dict]:
    answer_ = await request.app.state.rpc.call(APPEAL, "list_categories", actor=actor)
    return {c["category"]: c for c in answer_.get("items", ())}


def query_params(request: Request) -> Params:
    return list(request.query_params.multi_items())


async def read_get(request: Request, fmt: str) -> Params:
    """What every GET does first: the format, the caller's limit, its parameters."""
    check_format(fmt)
    state(request).limit("address", client_address(request))
    return query_params(request)


# ---- discovery ------------------------------------------------------------------------------

CHANGESET = "2026-12-07 00:00"


@router.get("/discovery.{format}")
async def discovery(request: Request, format: str):
    await read_get(request, format)
    base = str(request.base_url).rstrip("/")
    return answer(format, "discovery", {
        "changeset": CHANGESET,
        "contact": "新兴领域党建平台：请联系所在区县的平台管理员",
        "key_service": "提交诉求（POST requests）需要 API key，由平台管理员签发（POST /api/v1/open311/api-keys）；"
                       "查询无需 key",
        "endpoints": [{"specification": mapping.SPECIFICATION, "url": f"{base}{PREFIX}", "changeset": CHANGESET,
                       "type": "production", "formats": ["text/xml", "application/json"]}],
    })


# ---- services -------------------------------------------------------------------------------

@router.get("/services.{format}")
async def list_services(request: Request, format: str):
    params = await read_get(request, format)
    await jurisdiction(request, params)
    found = await categories(request, PUBLIC_ACTOR)
    return answer(format, "services", [mapping.service_document(c) for c in found.values()])


@router.get("/services/{service_code}.{format}")
async def service_definition(request: Request, service_code: str, format: str):
    params = await read_get(request, format)
    await jurisdiction(request, params)
    found = await categories(request, PUBLIC_ACTOR)
    if service_code not in found:
        raise Open311Error(404, "service_code: no such service (GET services lists them)")
    return answer(format, "service_definition", mapping.service_definition(found[service_code]))


# ---- requests -------------------------------------------------------------------------------

async def form_params(request: Request) -> tuple[Params, bytes]:
    """The query's parameters and then the form's (application/x-www-form-urlencoded, UTF-8),
    and the raw body; 400 for another body, one too large or not UTF-8."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Open311Error(400, f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and media_type != FORM_MEDIA_TYPE:
        raise Open311Error(400, f"send the request as {FORM_MEDIA_TYPE}; charset=utf-8")
    try:
        form = parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise Open311Error(400, "the form is not UTF-8") from None
    except ValueError:
        raise Open311Error(400, f"the form has more than {MAX_FORM_FIELDS} fields") from None
    return query_params(request) + form, bytes(body)


def command_id(request: Request, key_id: str, body: bytes) -> str | dict:
    """As deps.command_id: with an Idempotency-Key, the service answers a repeat with the first
    result (and refuses the key on another request); without, a fresh id."""
    idempotency_key = request.headers.get("idempotency-key")
    if not idempotency_key:
        return uuid.uuid4().hex
    if len(idempotency_key) > 200:
        raise Open311Error(400, "Idempotency-Key: at most 200 characters")
    canonical = canonical_request(request.method, request.url.path, request.query_params.multi_items(), body)
    fingerprint = hmac.new(fingerprint_key(request.app.state.settings.jwt_secret), canonical,
                           hashlib.sha256).hexdigest()
    return {"key": f"open311:{key_id}:{idempotency_key}", "request": fingerprint}


@router.post("/requests.{format}")
async def submit_request(request: Request, format: str):
    check_format(format)
    own = state(request)
    params, body = await form_params(request)
    api_key = value(params, "api_key")
    key_id = await own.store.key_id(api_key) if api_key else None
    if key_id is None:
        own.limit("address", client_address(request))  # guessing keys counts against the address
        raise Open311Error(403, "api_key: is missing, unknown or revoked (an administrator issues keys)")
    own.limit("user", key_id)
    district = await jurisdiction(request, params)
    service_code = value(params, "service_code")
    if service_code is None:
        raise Open311Error(400, "service_code: is required (GET services lists them)")
    actor = key_actor(key_id)
    found = await categories(request, actor)
    if service_code not in found:
        raise Open311Error(404, "service_code: no such service (GET services lists them)")
    request.state.open311_given = {"title": bool(mapping.attributes(params).get("title")),
                                   "division": bool(mapping.attributes(params).get("division"))}
    command = mapping.submission(params, district)
    await appeal_guard.guard_submission(request, account=f"open311:{key_id}", device_id=command.get("device_id"))
    appeal = await request.app.state.rpc.call(APPEAL, "submit_appeal", command=command, actor=actor,
                                              command_id=command_id(request, key_id, body))
    token = await own.store.token_for(appeal["id"], appeal.get("division", district), key_id)
    return answer(format, "service_requests", [
        mapping.submitted_document(appeal, token, found[service_code].get("sla_working_days"))])


@router.get("/requests.{format}")
async def list_requests(request: Request, format: str):
    params = await read_get(request, format)
    district = await jurisdiction(request, params)
    filters = mapping.public_filter(params, district, datetime.now(timezone.utc))
    items = []
    if filters is not None:
        found = await request.app.state.rpc.call(APPEAL, "list_public_appeals", filters=filters, actor=PUBLIC_ACTOR)
        items = found.get("items", [])[:mapping.MAX_ROWS]
    return answer(format, "service_requests", [mapping.request_document(a) for a in items])


def _not_found(what: str) -> Open311Error:
    return Open311Error(404, f"{what}: no such request in this jurisdiction")


@router.get("/requests/{service_request_id}.{format}")
async def get_request(request: Request, service_request_id: str, format: str):
    params = await read_get(request, format)
    district = await jurisdiction(request, params)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", service_request_id):
        raise _not_found("service_request_id")
    try:
        appeal = await request.app.state.rpc.call(APPEAL, "get_public_appeal", appeal_id=service_request_id,
                                                  actor=PUBLIC_ACTOR)
    except ApiProblem as exc:
        if exc.status == 404:
            raise _not_found("service_request_id") from None
        raise
    if not str(appeal.get("division", "")).startswith(district):
        raise _not_found("service_request_id")
    return answer(format, "service_requests", [mapping.request_document(appeal)])


@router.get("/tokens/{token}.{format}")
async def get_token(request: Request, token: str, format: str):
    params = await read_get(request, format)
    district = await jurisdiction(request, params)
    found = await state(request).store.token(token) if len(token) <= 64 else None
    if found is None or not str(found.get("division", "")).startswith(district):
        raise Open311Error(404, "token: no such token in this jurisdiction")
    return answer(format, "service_requests", [{"service_request_id": found["appeal_id"], "token": found["_id"]}])


# ---- anything else under /open311/v2/ ---------------------------------------------------------

@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def elsewhere(request: Request, rest: str):
    allowed = sorted({method for route in router.routes if route.name != "elsewhere"
                      and route.matches(request.scope)[0] == Match.PARTIAL for method in route.methods or ()})
    if allowed:
        raise Open311Error(405, f"{request.method} is not allowed here: {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
    raise Open311Error(404, "no such resource: see discovery.xml")
