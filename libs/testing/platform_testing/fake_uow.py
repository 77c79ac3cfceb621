"""A fake unit of work for use-case unit tests: no MongoDB, no RabbitMQ, no nameko container.

`FakeUnitOfWork` is the store's `UnitOfWork` (service_kit.store), so `emit` validates each
event against the contract exactly as in production, on an in-memory database (mongomock)
in place of a transaction's: repositories run on it unchanged, with `session` None. What
the store does around a use case, it does too: `commit()` runs the `before_commit` hooks
(counters written last), writes the outbox and then runs `on_commit`; `rollback()` puts the
database back as it was when the unit of work began, so a use case that raises leaves
nothing written, as an aborted transaction would. Used as a context manager it commits on a
clean exit and rolls back on an exception.

    db = fake_database()
    with FakeUnitOfWork("member", db) as uow:
        resource = commands.register_member(uow, command, organization, actor)
    assert [e.type for e in uow.events] == ["member.registered"]
"""

import functools
import inspect
from datetime import datetime
from typing import Any, Callable

import mongomock
from mongomock.collection import BulkOperationBuilder

from service_kit.store import UnitOfWork


def _accept_no_sort(method):
    """pymongo >= 4.11 passes `sort=` to the bulk builder's add_replace/add_update, which
    mongomock 4.3 does not take (mongomock issue #912): accept it when there is none."""
    if "sort" in inspect.signature(method).parameters:
        return method

    @functools.wraps(method)
    def accepting(self, *args, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError("mongomock does not sort a bulk write's update or replacement")
        return method(self, *args, **kwargs)
    return accepting


BulkOperationBuilder.add_replace = _accept_no_sort(BulkOperationBuilder.add_replace)
BulkOperationBuilder.add_update = _accept_no_sort(BulkOperationBuilder.add_update)


def fake_database(name: str = "test"):
    """A fresh in-memory database, timezone-aware as the services' clients are."""
    return mongomock.MongoClient(tz_aware=True)[name]


class FakeUnitOfWork(UnitOfWork):
    """The store's unit of work on an in-memory database: see the module's docstring.

    `source` is the service whose events it emits (the catalogue checks it); `now` fixes the
    clock of the use case; `shared` and `before_commit` are shared by units of work committed
    together, as under the store's group commit."""

    def __init__(self, source: str, db=None, *, correlationid: str | None = None, causationid: str | None = None,
                 now: datetime | None = None, shared: dict | None = None, before_commit: list | None = None):
        super().__init__(fake_database() if db is None else db, None, source, correlationid, causationid,
                         shared, before_commit)
        if now is not None:
            self.now = now
        self.committed = False
        self.outbox: list[dict] = []
        self._snapshot = _snapshot(self.db)

    def commit(self) -> list[dict]:
        """What the store does once the use case has returned; the outbox records written."""
        if self.committed:
            raise RuntimeError("this unit of work has been committed already")
        for hook in self.before_commit:
            hook()
        self.outbox = self.write_outbox(self.events)
        self.committed = True
        for callback in self.on_commit:
            callback()
        return self.outbox

    def rollback(self) -> None:
        """The database as it was when this unit of work began, and no events."""
        _restore(self.db, self._snapshot)
        self.events.clear()
        self.on_commit.clear()

    def run(self, work: Callable[["FakeUnitOfWork"], Any]) -> Any:
        """`work(self)`, committed; rolled back if it raises (as `Store.transaction`)."""
        with self:
            return work(self)

    def __enter__(self) -> "FakeUnitOfWork":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    # ---- what tests look at ------------------------------------------------------------------

    @property
    def event_types(self) -> list[str]:
        return [event.type for event in self.events]

    def events_of(self, type_: str) -> list:
        return [event for event in self.events if event.type == type_]


def _snapshot(db) -> dict[str, list[dict]]:
    return {name: list(db[name].find({})) for name in db.list_collection_names()}


def _restore(db, snapshot: dict[str, list[dict]]) -> None:
    for name in db.list_collection_names():
        db[name].delete_many({})
        if snapshot.get(name):
            db[name].insert_many(snapshot[name])
