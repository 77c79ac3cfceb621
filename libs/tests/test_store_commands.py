"""The store's command log on a real MongoDB wire server: a repeated command returns its first
result, a key reused for a different request is refused and changes nothing — alone and under
group commit."""

import threading
import uuid

import pytest

from platform_contracts.errors import Conflict, DomainError, InvalidValue
from service_kit.store import Store


@pytest.fixture(params=[False, True], ids=["alone", "group-commit"])
def store(request, mongodb_uri):
    store = Store(mongodb_uri, f"kit_{uuid.uuid4().hex[:8]}", "kit", serialize_writes=request.param)
    store.ensure_indexes()
    yield store
    store.client.drop_database(store.db.name)
    store.close()


def insert(name: str):
    def work(uow):
        uow.db.things.insert_one({"_id": name}, session=uow.session)
        return {"id": name}
    return work


def test_a_repeated_command_returns_its_first_result(store):
    key = {"key": "admin:k1", "request": "a" * 64}
    assert store.execute_command(key, insert("first")) == {"id": "first"}
    assert store.execute_command(key, insert("second")) == {"id": "first"}
    assert sorted(d["_id"] for d in store.db.things.find()) == ["first"]


def register(name: str):
    """Like registering a unit: refused if the thing exists already."""
    def work(uow):
        if uow.db.things.find_one({"_id": name}, session=uow.session):
            raise Conflict(f"{name} exists already")
        uow.db.things.insert_one({"_id": name}, session=uow.session)
        return {"id": name}
    return work


def test_a_repeat_that_its_first_run_would_now_refuse_gets_the_first_result(store):
    key = {"key": "admin:r1", "request": "a" * 64}
    assert store.execute_command(key, register("unit-1")) == {"id": "unit-1"}
    assert store.execute_command(key, register("unit-1")) == {"id": "unit-1"}
    with pytest.raises(Conflict):  # a new command is refused as before
        store.execute_command({"key": "admin:r2", "request": "a" * 64}, register("unit-1"))


def test_a_key_reused_for_another_request_is_refused_and_changes_nothing(store):
    store.execute_command({"key": "admin:k2", "request": "a" * 64}, insert("first"))
    with pytest.raises(InvalidValue) as refused:
        store.execute_command({"key": "admin:k2", "request": "b" * 64}, insert("second"))
    assert refused.value.field == ("Idempotency-Key",)  # the chassis answers a 422 naming the header
    assert sorted(d["_id"] for d in store.db.things.find()) == ["first"]


def test_a_plain_command_id_is_not_compared(store):
    store.execute_command("internal-1", insert("first"))
    assert store.execute_command("internal-1", insert("second")) == {"id": "first"}


def test_concurrent_commands_with_one_misused_key_fail_alone(store):
    """Under group commit the misused key shares a transaction with others: it alone fails."""
    store.execute_command({"key": "admin:k3", "request": "a" * 64}, insert("first"))
    outcomes: dict[str, object] = {}

    def run(name: str, command_id):
        try:
            outcomes[name] = store.execute_command(command_id, insert(name))
        except DomainError as exc:
            outcomes[name] = type(exc).__name__

    threads = [threading.Thread(target=run, args=(f"t{i}", {"key": f"admin:n{i}", "request": "c" * 64}))
               for i in range(6)]
    threads.append(threading.Thread(target=run, args=("misused", {"key": "admin:k3", "request": "b" * 64})))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.pop("misused") == "InvalidValue"
    assert outcomes == {f"t{i}": {"id": f"t{i}"} for i in range(6)}
    assert sorted(d["_id"] for d in store.db.things.find()) == ["first"] + [f"t{i}" for i in range(6)]


@pytest.mark.parametrize("command_id", ["", "x" * 301, 5, {"key": "k"}, {"key": "k", "request": ""}])
def test_malformed_command_ids_are_refused(store, command_id):
    with pytest.raises(InvalidValue):
        store.execute_command(command_id, insert("never"))
    assert store.db.things.count_documents({}) == 0


def event(n: int = 0):
    from platform_contracts.envelope import CloudEvent
    return CloudEvent(source="member", type="member.updated", subject=f"m{n}", data={})


def count(name: str):
    def work(uow):
        uow.db.counts.update_one({"_id": name}, {"$inc": {"n": 1}}, upsert=True, session=uow.session)
    return work


def test_an_event_is_applied_once_per_handler(store):
    e = event()
    assert store.apply_event("on_a", e, count("a")) is True
    assert store.apply_event("on_a", e, count("a")) is False
    assert store.apply_event("on_b", e, count("a")) is True  # another handler has its own inbox
    assert store.db.counts.find_one({"_id": "a"})["n"] == 2


def test_events_and_commands_committed_together_each_once(store):
    """A burst of events (redeliveries among them) and commands at once: under group commit
    they share transactions; every event is applied exactly once and every command runs once."""
    events = [event(i) for i in range(8)]
    outcomes: dict = {}

    def deliver(name, e):
        outcomes[name] = store.apply_event("on_burst", e, count("burst"))

    def command(name):
        outcomes[name] = store.execute_command({"key": f"admin:{name}", "request": "a" * 64}, insert(name))

    threads = [threading.Thread(target=deliver, args=(f"e{i}", e)) for i, e in enumerate(events)]
    threads += [threading.Thread(target=deliver, args=(f"again{i}", events[i])) for i in range(3)]
    threads += [threading.Thread(target=command, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.db.counts.find_one({"_id": "burst"})["n"] == 8
    applied = [outcomes[f"e{i}"] for i in range(3)] + [outcomes[f"again{i}"] for i in range(3)]
    assert sorted(applied) == [False] * 3 + [True] * 3  # of each pair, one applied it
    assert all(outcomes[f"e{i}"] is True for i in range(3, 8))
    assert all(outcomes[f"c{i}"] == {"id": f"c{i}"} for i in range(4))
    assert store.db.inbox.count_documents({}) == 8
