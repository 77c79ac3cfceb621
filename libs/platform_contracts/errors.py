"""Domain errors: why a command or query is refused, in the domain's words.

Domain, application and repository code raise these; they know nothing of HTTP. `field` names
the request field at fault as a path relative to the request (("division",), ("units", 3,
"division")), or is None when no field is. Only an entrypoint knows where that field came from
(the path, the query, the body) and which status a refusal gets: the chassis maps these to
problem documents (`platform_contracts.problems.from_domain`), and nothing below it
writes a status or a `["body", ...]` location."""

from collections.abc import Sequence

Field = tuple[str | int, ...]


def as_field(field: str | Sequence[str | int] | None) -> Field | None:
    if field is None:
        return None
    return (field,) if isinstance(field, str) else tuple(field)


class DomainError(Exception):
    """A refusal the caller can act on. `detail` is for people; `msg` is what is said of the
    field (defaults to `detail`). A refusal of several fields at once (a batch) names them in
    `fields`: [(field, msg), ...]."""

    def __init__(self, detail: str, field: str | Sequence[str | int] | None = None, msg: str | None = None,
                 *, fields: Sequence[tuple[str | Sequence[str | int], str]] = ()):
        super().__init__(detail)
        self.detail = detail
        self.field = as_field(field)
        self.msg = msg or detail
        self.fields = [(as_field(f), m) for f, m in fields] or ([(self.field, self.msg)] if self.field else [])


class InvalidValue(DomainError):
    """A value the rules do not accept: `field` is required."""

    def __init__(self, field: str | Sequence[str | int], msg: str, detail: str | None = None,
                 *, fields: Sequence[tuple[str | Sequence[str | int], str]] = ()):
        path = as_field(field)
        super().__init__(detail or f"{'.'.join(map(str, path))}: {msg}", path, msg, fields=fields)


class NotFound(DomainError):
    """No such record. With `field` (the request refers to it, e.g. a body's unit_id) the
    request itself is what is wrong; without, or when the field is the addressed resource,
    there is simply nothing there."""

    def __init__(self, kind: str, ident: str, field: str | Sequence[str | int] | None = None,
                 detail: str | None = None):
        self.kind, self.ident = kind, ident
        super().__init__(detail or f"{kind} {ident} does not exist", field, f"{kind} {ident} does not exist")


class Conflict(DomainError):
    """The record's state does not allow it now (a dissolved organization, a transfer already
    rejected, a value already taken)."""


class Forbidden(DomainError):
    """Outside the caller's role or scope."""


class TooManyRequests(DomainError):
    """The caller has used up an allowance (answers that disclose something, per day): try later."""


class Unavailable(DomainError):
    """A service this one depends on did not answer: nothing was changed, try again."""
