"""Filters, and the broadcaster's ordering, gap and resume rules, over an in-memory log."""

import asyncio

import pytest

from gateway.event_log import LogEntry
from gateway.fanout import Broadcaster, StreamGap
from gateway.stream_filter import EventFilter, parse_division, parse_types


def entry(seq: int, type_: str = "coverage.changed", division: str | None = "370113001") -> LogEntry:
    return LogEntry(seq=seq, type=type_, division=division, envelope={"seq": seq})


class MemoryLog:
    """The EventLog read interface over a dict, where tests control what is visible."""

    def __init__(self, *entries: LogEntry):
        self.entries = {e.seq: e for e in entries}

    def add(self, *entries: LogEntry) -> None:
        self.entries.update({e.seq: e for e in entries})

    async def after(self, seq, limit, upto=None, where=None):  # `where` narrows the read; the filter decides
        found = sorted(s for s in self.entries if s > seq and (upto is None or s <= upto))
        return [self.entries[s] for s in found[:limit]]

    async def last_seq(self):
        return max(self.entries, default=0)


def test_filters():
    any_event = EventFilter()
    assert any_event.matches(entry(1)) and any_event.matches(entry(1, division=None))
    typed = EventFilter(types=("organization.*", "coverage.alert_*"))
    assert typed.matches(entry(1, "organization.created")) and typed.matches(entry(1, "coverage.alert_raised"))
    assert not typed.matches(entry(1, "coverage.changed")) and not typed.matches(entry(1, "unit.registered"))
    scoped = EventFilter(division="3701")
    assert scoped.matches(entry(1, division="370113001001"))
    assert not scoped.matches(entry(1, division="370213")) and not scoped.matches(entry(1, division=None))
    # A transfer concerns both sides: the envelope's `otherdivision` matches too.
    other_side = LogEntry(seq=1, type="transfer.approved", division="370213001",
                          envelope={"otherdivision": "370113001"})
    assert scoped.matches(other_side) and not EventFilter(division="3702").matches(entry(1, division="370113"))


def test_parse_types_and_division():
    assert parse_types("organization.*, coverage.*,,organization.*") == ("organization.*", "coverage.*")
    assert parse_types(["unit.registered"]) == ("unit.registered",) and parse_types(None) == ()
    for bad in ("a b", ["ok", 3], "x" * 101, ",".join(f"t{i}" for i in range(40))):
        with pytest.raises(ValueError):
            parse_types(bad)
    assert parse_division("3701") == "3701" and parse_division("") is None
    with pytest.raises(ValueError):
        parse_division("3701x")


async def collect(stream, count: int, timeout: float = 3) -> list:
    """The positions of the next `count` entries (a StreamGap as it is)."""
    seqs = []
    async with asyncio.timeout(timeout):
        async for item in stream:
            seqs.append(item if isinstance(item, StreamGap) else item.seq)
            if len(seqs) == count:
                return seqs
    return seqs


async def test_live_delivery_in_order_and_filtered():
    log = MemoryLog(entry(1), entry(2))
    broadcaster = Broadcaster(log, poll_interval=0.02)
    await broadcaster.start()
    try:
        stream = broadcaster.stream(broadcaster.subscribe(EventFilter(types=("coverage.*",))), None)
        log.add(entry(3), entry(4, "unit.registered"), entry(5))
        broadcaster.notify()
        assert await collect(stream, 2) == [3, 5]  # only after subscribing, only matching
    finally:
        await broadcaster.stop()


async def test_waits_for_a_missing_position_then_skips_it():
    log = MemoryLog()
    broadcaster = Broadcaster(log, poll_interval=0.02, gap_wait=0.3)
    await broadcaster.start()
    try:
        stream = broadcaster.stream(broadcaster.subscribe(EventFilter()), None)
        log.add(entry(1), entry(3))  # 2 was allocated by another replica, not yet written
        got = await collect(stream, 1)
        await asyncio.sleep(0.1)     # part of the test: 2 comes late, though within gap_wait
        log.add(entry(2))            # it arrives within the wait: order is kept
        assert got + await collect(stream, 2) == [1, 2, 3]

        log.add(entry(5))            # 4 never arrives: skipped after gap_wait
        started = asyncio.get_running_loop().time()
        assert await collect(stream, 1) == [5]
        assert asyncio.get_running_loop().time() - started >= 0.25  # it did wait: a lower bound, load cannot fail it
    finally:
        await broadcaster.stop()


async def test_resume_replays_then_goes_live_without_gap_or_repeat():
    log = MemoryLog(*(entry(s) for s in range(1, 6)))
    broadcaster = Broadcaster(log, poll_interval=0.02)
    await broadcaster.start()
    try:
        subscription = broadcaster.subscribe(EventFilter())
        # Written after subscribing but before the replay reads: live, not replayed, once.
        log.add(entry(6), entry(7))
        stream = broadcaster.stream(subscription, last_event_id=2)
        broadcaster.notify()
        assert await collect(stream, 5) == [3, 4, 5, 6, 7]

        # A client that is ahead of this replica (it read a later position elsewhere).
        ahead = broadcaster.stream(broadcaster.subscribe(EventFilter()), last_event_id=9)
        log.add(entry(8), entry(9), entry(10))
        broadcaster.notify()
        assert await collect(ahead, 1) == [10]
    finally:
        await broadcaster.stop()


async def test_a_resume_whose_next_position_is_gone_starts_with_a_gap():
    log = MemoryLog(*(entry(s) for s in range(4, 7)))  # 1 to 3 purged
    broadcaster = Broadcaster(log, poll_interval=0.02)
    await broadcaster.start()
    try:
        assert await collect(broadcaster.stream(broadcaster.subscribe(EventFilter()), last_event_id=1), 4) == [
            StreamGap(last_event_id=1, resumed_after=3), 4, 5, 6]
        everything_gone = MemoryLog(entry(9))
        late = Broadcaster(everything_gone, poll_interval=0.02)
        await late.start()
        try:
            everything_gone.entries.clear()  # purged after the subscription took its position
            stream = late.stream(late.subscribe(EventFilter()), last_event_id=2)
            assert await collect(stream, 1) == [StreamGap(last_event_id=2, resumed_after=9)]
        finally:
            await late.stop()
        # Resuming right after a retained entry, or from the newest position: no gap.
        assert await collect(broadcaster.stream(broadcaster.subscribe(EventFilter()), last_event_id=4), 2) == [5, 6]
    finally:
        await broadcaster.stop()


async def test_entries_logged_here_are_delivered_without_reading_them_back_and_only_once():
    log = MemoryLog(entry(1))
    broadcaster = Broadcaster(log, poll_interval=3600)  # no poll: only what is handed over
    await broadcaster.start()
    try:
        stream = broadcaster.stream(broadcaster.subscribe(EventFilter()), None)
        log.add(entry(2), entry(3))  # written by this replica's consumer...
        broadcaster.deliver_logged([entry(2), entry(3)])  # ...and handed over
        assert await collect(stream, 2) == [2, 3]

        # A gap (another replica wrote 4): the log is read, and nothing is delivered twice.
        log.add(entry(4), entry(5))
        broadcaster.deliver_logged([entry(5)])
        broadcaster.notify()
        assert await collect(stream, 2) == [4, 5]
        log.add(entry(6))
        broadcaster.notify()  # another read of the log: it finds 6 and nothing it delivered before
        assert await collect(stream, 1) == [6]  # 4 and 5 came once
    finally:
        await broadcaster.stop()


async def test_logged_entries_with_a_gap_between_them_are_not_delivered_past_it():
    """A writer that collided with another replica hands over entries that are not consecutive
    (2, 3, then 7, 8 after reloading its position): what the other replica wrote in between
    (4-6) is read from the log, in order, and nothing is skipped or repeated."""
    log = MemoryLog(entry(1))
    broadcaster = Broadcaster(log, poll_interval=3600)
    await broadcaster.start()
    try:
        stream = broadcaster.stream(broadcaster.subscribe(EventFilter()), None)
        log.add(*(entry(s) for s in range(2, 9)))
        broadcaster.deliver_logged([entry(2), entry(3), entry(7), entry(8)])
        assert await collect(stream, 7) == [2, 3, 4, 5, 6, 7, 8]
    finally:
        await broadcaster.stop()


async def test_stop_ends_streams():
    broadcaster = Broadcaster(MemoryLog(), poll_interval=0.02)
    await broadcaster.start()
    subscription = broadcaster.subscribe(EventFilter())
    waiting, next_entry = asyncio.Event(), subscription.next

    async def next_once_waiting():  # tells the test when the stream waits for a live entry
        waiting.set()
        return await next_entry()

    subscription.next = next_once_waiting
    waiter = asyncio.create_task(collect(broadcaster.stream(subscription, None), 1))
    await waiting.wait()
    await broadcaster.stop()
    assert await waiter == []


async def test_stop_right_after_a_notify_returns_on_python_3_11():
    """asyncio.wait_for on 3.11 swallows a cancellation that lands as the wait is woken: stop()
    once hung for ever when a notify() came just before it (three runs out of three)."""
    for _ in range(3):
        broadcaster = Broadcaster(MemoryLog(), poll_interval=3600)
        await broadcaster.start()
        await asyncio.sleep(0)  # the loop is waiting on its wake-up: the race needs it there
        broadcaster.notify()
        await asyncio.wait_for(broadcaster.stop(), 5)
