"""The chassis's entrypoint decorators: what every entrypoint used to repeat, done once.

    @command(UpdateUnit, body="changes", path="unit_id")
    def update_unit(self, uow, unit_id, changes, actor):
        return self.use_cases.update_unit(uow, unit_id, changes, actor)

is the RPC `update_unit(unit_id, changes, actor=None, command_id=None)`: it verifies the actor,
a token its caller signed for this service and method (service_kit.actor_tokens; refused and
counted otherwise, before anything runs), validates `changes` against the contract model, runs the
method in one transaction with the command's stored result under its command id (a repeat
returns the first result), and turns domain errors into problem documents located in the
request (path, body or query), and the database being unreachable into a 503 to try again.
Metrics count every outcome (EntrypointMetrics).

The RPC signature is the method's, without `uow`, with `actor=None` (and `command_id=None`
for a command), so nameko refuses a call that does not fit it before a worker runs."""

import functools
import inspect
import logging
from collections.abc import Callable, Sequence

from nameko.rpc import Rpc
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError

from platform_contracts.errors import DomainError, InvalidValue
from platform_contracts.problems import Rejected, check_page_limit, from_domain, parse_or_reject
from service_kit.actor_tokens import ActorRefused
from service_kit.metrics import ACTORS_REFUSED
from service_kit.store import IDEMPOTENCY_KEY

# A Rejected is the caller's mistake, answered with a 4xx: nameko logs it as expected (a
# warning), not as a failure of the service. `Rpc.decorator(...)` with the keyword, not
# partial(Rpc.decorator, ...): used bare, nameko's decorator drops keyword arguments.
rpc = Rpc.decorator(expected_exceptions=(Rejected,))

_P = inspect.Parameter

log = logging.getLogger(__name__)


def database_unavailable(service: str, error: PyMongoError) -> Rejected | None:
    """The database unreachable or too slow is a 503 to try again (the command log makes a
    retry under the same command id safe); any other database error is a fault (None)."""
    if not (isinstance(error, ConnectionFailure) or error.timeout):
        return None
    log.warning("%s: the database is unavailable: %s", service, type(error).__name__)
    return Rejected.make(503, f"the {service} service's database is unavailable; try again shortly")


def _verified_actor(service, token, method: str):
    try:
        return service.callers.verify(token, method)
    except ActorRefused as refused:
        ACTORS_REFUSED.labels(service.name, refused.reason).inc()
        log.warning("%s.%s: refused a call: %s", service.name, method, refused.detail)
        raise


def locator(path: Sequence[str], where: str) -> Callable[[tuple], list]:
    """Where a field named by a domain error sits in the request: a path parameter, the
    Idempotency-Key header (the command id), or the body (commands) / the query (queries)."""
    def locate(field: tuple) -> list:
        if field[0] in path:
            return ["path", *field]
        return ["header", *field] if field[0] == IDEMPOTENCY_KEY else [where, *field]
    return locate


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _rpc_signature(method, extra: Sequence[str]) -> inspect.Signature:
    params = [p for name, p in inspect.signature(method).parameters.items() if name != "uow"]
    params = [p.replace(default=None) if p.name == "actor" else p for p in params]
    params += [_P(name, _P.POSITIONAL_OR_KEYWORD, default=None) for name in extra]
    return inspect.Signature(params)


def _entrypoint(method, model, body: str | None, path: Sequence[str], where: str, extra: Sequence[str],
                run: Callable):
    """Wrap `method` as an RPC: bind and check the arguments, parse the actor and the body,
    map domain errors; `run(self, bound_arguments, call)` decides how the method is called."""
    signature = _rpc_signature(method, extra)
    locate = locator(_names(path), where)

    def entry(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        try:
            arguments["actor"] = _verified_actor(self, arguments.get("actor"), method.__name__)
            if model is not None:
                arguments[body] = parse_or_reject(model, arguments[body] or {}, where)
            if "limit" in arguments:
                arguments["limit"] = check_page_limit(arguments["limit"])
            return run(self, arguments, lambda **more: method(**{**arguments, **more}))
        except DomainError as error:
            raise from_domain(error, locate) from None
        except PyMongoError as error:
            if (unavailable := database_unavailable(self.name, error)) is None:
                raise
            raise unavailable from None

    functools.update_wrapper(entry, method)
    del entry.__wrapped__  # nameko checks calls against __signature__, not the method's own
    entry.__signature__ = signature
    return rpc(entry)


def parse_each(model, items, field: str, max_items: int) -> list:
    """A batch of bodies (a ledger import), each against `model`: every invalid value of every
    item named at once (`field`, index, its field), so that nothing of a bad batch is written."""
    if not isinstance(items, list) or not 1 <= len(items) <= max_items:
        raise InvalidValue(field, f"must be a list of 1 to {max_items} items")
    parsed, errors = [], []
    for index, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            errors += [((field, index, *e["loc"]), e["msg"].removeprefix("Value error, "))
                       for e in exc.errors(include_input=False, include_url=False)]
    if errors:
        raise InvalidValue(field, f"{len(errors)} invalid value(s) in the batch", fields=errors,
                           detail=f"{len(errors)} invalid value(s) in the batch; nothing was written")
    return parsed


def parse_rows(model, rows, max_rows: int) -> tuple[list, list[dict]]:
    """A batch of a ledger import: `rows` as `[{"row": n, "data": {...}}]`, each against `model`
    on its own. The rows that fit, as `(n, parsed)`, and the others rejected with their fields
    (as platform_contracts.ledgers.RejectedRow), so that a bad row never holds back the rest."""
    if not isinstance(rows, list) or not 1 <= len(rows) <= max_rows:
        raise InvalidValue("rows", f"must be a list of 1 to {max_rows} rows")
    parsed, rejected = [], []
    for index, item in enumerate(rows):
        if not isinstance(item, dict) or not isinstance(item.get("row"), int) or not isinstance(item.get("data"), dict):
            raise InvalidValue(("rows", index), "must be {row: <int>, data: <object>}")
        try:
            parsed.append((item["row"], model.model_validate(item["data"])))
        except ValidationError as exc:
            rejected.append({"row": item["row"], "errors": [
                {"field": ".".join(str(part) for part in e["loc"]) or "data",
                 "problem": "missing" if e["type"] == "missing" else "invalid",
                 "detail": e["msg"].removeprefix("Value error, ")}
                for e in exc.errors(include_input=False, include_url=False)]})
    return parsed, rejected


def query(model=None, *, body: str | None = "filters", path: str | Sequence[str] = ()):
    """A read: `method(self, <args>, actor)`, with `body` (if a model is given) validated
    as query parameters and `limit` checked as a page size."""
    def decorate(method):
        return _entrypoint(method, model, body, path, "query", (), lambda self, arguments, call: call())
    return decorate


def operation(model=None, *, body: str | None = "command", path: str | Sequence[str] = ()):
    """An RPC that is neither a logged command nor a plain read (it opens its own
    transactions, or none): validation, actor and error mapping only."""
    def decorate(method):
        return _entrypoint(method, model, body, path, "body", (), lambda self, arguments, call: call())
    return decorate


def command(model=None, *, body: str | None = "command", path: str | Sequence[str] = (), ask_first: bool = False):
    """A state change, executed once per command id in one transaction with its events.

    By default the method is the transaction's work: `method(self, uow, <args>, actor)`.
    With `ask_first`, it first has questions for other services (a transaction must not wait
    on another service): a repeated command id is answered from the command log before they
    are asked, then `method(self, <args>, actor)` runs outside any transaction and returns
    the work, a function of the unit of work."""
    def decorate(method):
        def run(self, arguments, call):
            command_id = arguments.pop("command_id")
            if not ask_first:
                return self.store.execute_command(command_id, lambda uow: call(uow=uow))
            if (previous := self.store.stored_result(command_id)) is not None:
                return previous
            return self.store.execute_command(command_id, call())

        return _entrypoint(method, model, body, path, "body", ("command_id",), run)
    return decorate
