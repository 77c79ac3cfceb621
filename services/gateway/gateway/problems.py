"""RFC 9457 problem documents: the one shape of every error the gateway answers with."""

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException

from platform_contracts.errors import DomainError, Field
from platform_contracts.problems import Problem, from_domain

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://partybuilding.example/problems/"
# When a client may try a 503 again: a database or service that is away is usually back in
# seconds (a restart, a failover), and a client without a hint would retry at once, in a loop.
RETRY_AFTER_SECONDS = 2

TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Outside your scope",
    404: "Not found",
    405: "Method not allowed",
    409: "State conflict",
    422: "Invalid field values",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def problem(status: int, detail: str, errors: list[dict] | None = None, title: str | None = None) -> dict:
    doc: dict[str, Any] = {
        "type": f"{TYPE_BASE}{status}",
        "title": title or TITLES.get(status, "Request failed"),
        "status": status,
        "detail": detail,
    }
    if errors:
        doc["errors"] = errors
    return doc


class ApiProblem(Exception):
    """Raised anywhere in the gateway to answer with a problem document."""

    def __init__(self, document: dict, headers: dict[str, str] | None = None):
        super().__init__(document.get("detail"))
        self.document = document
        self.headers = headers

    @property
    def status(self) -> int:
        return int(self.document["status"])

    @classmethod
    def of(cls, status: int, detail: str, errors: list[dict] | None = None, **kwargs) -> "ApiProblem":
        return cls(problem(status, detail, errors), **kwargs)

    @classmethod
    def invalid(cls, loc: list, msg: str) -> "ApiProblem":
        return cls.of(422, f"{'.'.join(map(str, loc))}: {msg}", [{"loc": loc, "msg": msg}])


def problem_response(document: dict, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every 503 says when to try again (Retry-After), unless its raiser said it already."""
    status = int(document["status"])
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})}
    return JSONResponse(document, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def validation_problem(errors: list[dict]) -> dict:
    """FastAPI's validation errors as a 400 (body is not JSON) or a 422 naming each field.

    Only `loc` and `msg` are kept: the rejected input may hold personal data."""
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem(400, "the request body is not valid JSON")
    fields = [{"loc": [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())],
               "msg": str(err.get("msg", "invalid")).removeprefix("Value error, ")} for err in errors]
    named = ", ".join(".".join(map(str, f["loc"][1:] or f["loc"])) for f in fields)
    return problem(422, f"invalid value(s): {named}", fields)


def domain_problem(error: DomainError, locate: Callable[[Field], list]) -> dict:
    """A domain error's problem document, as a service would answer it; `locate(field)` gives the
    request location of the field it names."""
    return from_domain(error, locate).problem


def route_location(request: Request, field: Field) -> list:
    """Where a field a domain error names came from, told by the matched route: one of its (or
    its dependencies') path parameters, one of its query parameters, or else the body."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is not None:
        for where, kind in (("path", "path_params"), ("query", "query_params")):
            if field[0] in _parameter_names(dependant, kind):
                return [where, *field]
    return ["body", *field]


def _parameter_names(dependant, kind: str) -> set[str]:
    """The request names (aliases) of a route's parameters of one kind, its dependencies' included."""
    return {param.alias for param in getattr(dependant, kind)}.union(
        *(_parameter_names(d, kind) for d in dependant.dependencies))


async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
    return problem_response(exc.document, exc.headers)


async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
    return problem_response(domain_problem(exc, lambda field: route_location(request, field)))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem_response(validation_problem(list(exc.errors())))


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Request failed")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(problem(exc.status_code, detail), getattr(exc, "headers", None))


async def _database_error(request: Request, exc: PyMongoError) -> JSONResponse:
    """MongoDB unreachable or too slow (the client's timeouts bound the wait) is a 503 to try
    again; any other database error is a fault of the gateway's, a 500."""
    if isinstance(exc, ConnectionFailure) or exc.timeout:
        log.warning("MongoDB unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(problem(503, "the gateway's database is unavailable; try again shortly"))
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(problem(500, "the gateway failed to handle this request; it has been logged"))


# What each error status means on an operation, for the OpenAPI document.
ERROR_DESCRIPTIONS = {
    400: "the request body is not valid JSON",
    401: "no valid access token (missing, expired, revoked, or the account is inactive)",
    403: "the caller's role or scope does not allow this",
    404: "the addressed record does not exist (or is outside the caller's scope)",
    409: "the record's state does not allow this change, or the request conflicts with another",
    422: "a field is missing or invalid (each is named in `errors`), or the Idempotency-Key was used "
         "for a different request",
    429: "too many requests: wait before trying again",
    503: "a database, the message broker or a service is unavailable: nothing was changed, try again",
    504: "a service did not answer in time: the request may or may not have been applied",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_WRITE_METHODS = {"post", "put", "patch", "delete"}


def error_statuses(path: str, method: str, operation: dict, calls_services: bool) -> set[int]:
    """The error statuses an operation can answer with, told by its shape: what it reads
    (parameters, a body), whether it authenticates, writes, or calls a service."""
    if not path.startswith("/api/"):
        return {503} if path == "/readyz" else set()  # the other probes always answer
    statuses = {503}  # every API request reads the gateway's database (accounts) or a service
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(400)
    if "security" in operation:
        statuses |= {401, 403}
    if any(p["in"] == "path" for p in operation.get("parameters", ())):
        statuses.add(404)
    if method in _WRITE_METHODS and "security" in operation:  # a change to a record
        statuses.add(409)
    if calls_services:
        statuses.add(504)
    statuses.add(429)  # every REST operation is rate-limited per caller (rate_limit.py)
    return statuses


def document_errors(schema: dict, routes_calling_services: set[tuple[str, str]]) -> dict:
    """Declare every operation's error responses as problem documents (the Problem schema):
    those its shape implies, and those its route declared without a schema. FastAPI's own 422
    (HTTPValidationError, application/json) is replaced: the gateway never answers with it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in [s for s in responses if not isinstance(s, str)]:  # a route's own, as ints
                responses[str(status)] = responses.pop(status)
            declared = {int(status) for status in responses if status.isdigit() and int(status) >= 400}
            calls_services = (path, method) in routes_calling_services
            for status in sorted(declared | error_statuses(path, method, operation, calls_services)):
                response = responses.get(str(status), {})
                if status == 422 and PROBLEM_MEDIA_TYPE not in response.get("content", {}):
                    response = {}  # FastAPI's HTTPValidationError
                response.setdefault("description", ERROR_DESCRIPTIONS.get(status, TITLES.get(status, "Error")))
                response["content"] = content
                if status in (429, 503):
                    response["headers"] = {**_RETRY_AFTER, **response.get("headers", {})}
                if status == 401:
                    response["headers"] = {**_WWW_AUTHENTICATE, **response.get("headers", {})}
                responses[str(status)] = response
    return schema


def _calls_services(dependant, rpc_client) -> bool:
    return any(d.call is rpc_client or _calls_services(d, rpc_client) for d in dependant.dependencies)


def _api_routes(routes, prefix: str = ""):
    """(path, route) of every endpoint, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "dependant"):
            yield prefix + route.path, route


def install_openapi(app: FastAPI) -> None:
    """The app's /openapi.json, with the error responses of every operation (see
    document_errors), built once, at the first request for it: after all routers are included."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            from .deps import rpc_client  # deps imports this module (ApiProblem)

            rpc_routes = {(path, method.lower()) for path, route in _api_routes(app.routes)
                          if _calls_services(route.dependant, rpc_client) for method in route.methods}
            app.openapi_schema = document_errors(build(), rpc_routes)
        return app.openapi_schema

    app.openapi = openapi


def install(app: FastAPI) -> None:
    install_openapi(app)
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(PyMongoError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
