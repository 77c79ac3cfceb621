"""RFC 9457 problem details, and the exception that carries one across an RPC boundary.

Domain code raises `Rejected`; nameko serialises its single argument (the problem dict), and
the gateway turns it back into an `application/problem+json` response with the same status.
"""

from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


_TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Outside your scope",
    404: "Not found",
    409: "State conflict",
    422: "Invalid field values",
    429: "Too many requests",
    503: "Service unavailable",
}


def _restore_types(problem: dict[str, Any]) -> dict[str, Any]:
    """nameko serialises exception arguments with str() on every non-container value; bring
    back the integers (the status, list indexes in `loc`) on the receiving side."""
    restored = dict(problem)
    restored["status"] = int(restored["status"])
    if restored.get("errors"):
        restored["errors"] = [
            {**e, "loc": [int(p) if isinstance(p, str) and p.isdigit() else p for p in e["loc"]]}
            for e in restored["errors"]
        ]
    return restored


class Rejected(Exception):
    """A command or query refused for a reason the caller can fix (a 4xx), or because a
    service it depends on is away (a 503: nothing was changed, try again)."""

    def __init__(self, problem: dict[str, Any]):
        super().__init__(problem)
        self.problem = _restore_types(problem)

    @property
    def status(self) -> int:
        return int(self.problem["status"])

    @classmethod
    def make(cls, status: int, detail: str, errors: list[dict] | None = None) -> "Rejected":
        problem = Problem(
            type=f"https://partybuilding.example/problems/{status}",
            title=_TITLES.get(status, "Request rejected"),
            status=status,
            detail=detail,
            errors=[FieldError(**e) for e in errors] if errors else None,
        )
        return cls(problem.model_dump(exclude_none=True))

    @classmethod
    def invalid(cls, field: str | list, msg: str) -> "Rejected":
        loc = field if isinstance(field, list) else ["body", field]
        return cls.make(422, f"{'.'.join(map(str, loc))}: {msg}", [{"loc": loc, "msg": msg}])

    @classmethod
    def not_found(cls, kind: str, ident: str) -> "Rejected":
        return cls.make(404, f"{kind} {ident} does not exist")

    @classmethod
    def conflict(cls, detail: str) -> "Rejected":
        return cls.make(409, detail)

    @classmethod
    def forbidden(cls, detail: str) -> "Rejected":
        return cls.make(403, detail)


def from_domain(error, locate) -> Rejected:
    """A domain error (platform_contracts.errors) as the problem an entrypoint answers with.
    `locate(field)` gives the field's request location (["path", "unit_id"], ["body",
    "units", 3, "division"]); a missing record is a 404 when the request addresses it (no
    field, or a path one) and a 422 when the request refers to it from its body or query."""
    from .errors import Conflict, Forbidden, InvalidValue, NotFound, TooManyRequests, Unavailable

    loc = locate(error.field) if error.field else None
    errors = [{"loc": locate(field), "msg": msg} for field, msg in error.fields] or None
    if isinstance(error, NotFound):
        if loc and loc[0] != "path":
            return Rejected.make(422, f"{'.'.join(map(str, loc))}: {error.msg}", errors)
        return Rejected.make(404, error.detail)
    statuses = {InvalidValue: 422, Conflict: 409, Forbidden: 403, TooManyRequests: 429, Unavailable: 503}
    status = next(s for cls, s in statuses.items() if isinstance(error, cls))  # subclasses too
    if isinstance(error, InvalidValue) and loc and len(error.fields) == 1:
        return Rejected.make(422, f"{'.'.join(map(str, loc))}: {error.msg}", errors)
    return Rejected.make(status, error.detail, errors)


def from_validation_error(exc, prefix: str = "body") -> Rejected:
    """A pydantic ValidationError as a 422 naming each field."""
    errors = [
        {"loc": [prefix, *err["loc"]], "msg": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors(include_url=False)
    ]
    fields = ", ".join(".".join(map(str, e["loc"][1:])) or prefix for e in errors)
    return Rejected.make(422, f"invalid value(s): {fields}", errors)


def describe_invalid(exc: ValueError) -> str:
    """Why a value was refused, without quoting it (it may hold personal data)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                         for e in exc.errors(include_input=False, include_url=False))
    return type(exc).__name__ if isinstance(exc, UnicodeDecodeError) else str(exc)[:200]


def parse_or_reject(model, payload, prefix: str = "body"):
    """Validate a payload that crossed a process boundary; a 422 naming the fields if bad."""
    from pydantic import ValidationError

    if not isinstance(payload, dict):
        raise Rejected.invalid([prefix], "must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


def check_page_limit(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
        raise Rejected.invalid(["query", "limit"], "must be an integer from 1 to 500")
    return limit
