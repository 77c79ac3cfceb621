"""The coverage projection: every change to units moves the counters in the same transaction,
and announces itself as coverage.changed (and should-establish alerts)."""

from collections import defaultdict

from platform_contracts.organization import UnitStatus

from . import domain
from .coverage_metrics import publish_gauges
from .domain import ALL, COUNT_FIELDS, CounterKey
from .repository import Repository, flatten_counters


def _split(before: dict | None, after: dict | None, level: int) -> list[tuple[str, dict | None, dict | None]]:
    """A change keyed by the division it is reported under (cut to `level` digits); a move
    reports on both sides."""
    if before and after and before["division"] != after["division"]:
        return [(before["division"][:level], before, None), (after["division"][:level], None, after)]
    return [((after or before)["division"][:level], before, after)]


class CounterBuffer:
    """The counters as one transaction sees them: read once, moved in memory by each change,
    written once just before the commit. Commands committed together (group commit) share
    it, so a group pays one counter read and one counter write, not one per command."""

    def __init__(self, repo: Repository, now):
        self.repo = repo
        self.now = now
        self.documents: dict[str, dict] = {}  # as read, by division
        self.read_divisions: set[str] = set()
        self.loaded: dict[str, dict[str, int]] = {}
        self.pending: list[dict[str, dict[str, int]]] = []

    @classmethod
    def of(cls, uow, repo: Repository) -> "CounterBuffer":
        if "counters" not in uow.shared:
            buffer = uow.shared["counters"] = cls(repo, uow.now)
            uow.before_commit.append(buffer.flush)
        return uow.shared["counters"]

    def rows(self, key_ids) -> dict[str, dict[str, int]]:
        """Live rows for `key_ids` (and any loaded before); changes to them are the overlay."""
        missing = set(key_ids) - set(self.loaded)
        if not missing:
            return self.loaded
        unread = {CounterKey.parse(key_id).division for key_id in missing} - self.read_divisions
        if unread:
            self.documents.update(self.repo.counter_documents(unread))
            self.read_divisions |= unread
        stored = {k: v for d in self.documents.values() for k, v in flatten_counters(d).items()}
        for key_id in missing:
            self.loaded[key_id] = {f: stored.get(key_id, {}).get(f, 0) for f in COUNT_FIELDS}
        return self.loaded

    def add(self, delta: dict[str, dict[str, int]]) -> None:
        self.pending.append(delta)

    def flush(self) -> None:
        delta = domain.merge_deltas(self.pending)
        self.rows(delta)  # a document is written back from what this transaction read of it
        self.documents.update(self.repo.replace_counters(self.documents, delta, self.now))
        self.pending = []


def apply_unit_changes(uow, repo: Repository, changes: list[tuple[dict | None, dict | None]], cause: str,
                       report_level: int = 12) -> None:
    """Move the counters for `changes` (unit before, unit after) and emit what they mean:
    one coverage.changed per division touched, down to `report_level` digits (a ledger
    import reports per district rather than per community)."""
    groups: dict[str, list] = defaultdict(list)
    for before, after in changes:
        for division, b, a in _split(before, after, report_level):
            groups[division].append((b, a))

    deltas = {division: domain.merge_deltas([domain.counter_delta(b, a) for b, a in pairs])
              for division, pairs in groups.items()}
    reported = {division: _reported_keys(division, pairs) for division, pairs in groups.items()}
    touched = {k for d in deltas.values() for k in d} | {k.id for keys in reported.values() for k in keys}
    buffer = CounterBuffer.of(uow, repo)
    counts = buffer.rows(touched)

    for division in sorted(groups):
        delta = deltas[division]
        if not delta:
            continue
        before_figures = {k.id: domain.figures(counts.get(k.id), k, uow.now) for k in reported[division]}
        for key_id, increments in delta.items():
            row = counts.setdefault(key_id, dict.fromkeys(COUNT_FIELDS, 0))
            for field, value in increments.items():
                row[field] += value
        scopes = [
            {"division": before_figures[k.id].division, "industry": before_figures[k.id].industry,
             "type": before_figures[k.id].type, "before": before_figures[k.id].model_dump(mode="json"),
             "after": domain.figures(counts.get(k.id), k, uow.now).model_dump(mode="json")}
            for k in reported[division]
        ]
        own = next(s for s in scopes if s["division"] == division and s["industry"] is None and s["type"] is None)
        uow.emit("coverage.changed", subject=division, division=division, data={
            "division": division, "before": own["before"], "after": own["after"], "scopes": scopes, "cause": cause,
        })

    buffer.add(domain.merge_deltas(list(deltas.values())))
    _emit_alerts(uow, changes)

    districts = {d[:6] for d in groups}
    snapshot = {d: dict(counts.get(CounterKey(d, ALL, ALL).id, {})) for d in districts}
    uow.on_commit.append(lambda: [publish_gauges(d, c) for d, c in snapshot.items()])


def _reported_keys(division: str, pairs) -> list[CounterKey]:
    keys: dict[str, CounterKey] = {}
    for before, after in pairs:
        unit = after or before
        for key in domain.scopes_reported(division, unit["industry"], unit["type"]):
            keys[key.id] = key
    return list(keys.values())


def _emit_alerts(uow, changes) -> None:
    for before, after in changes:
        was = bool(before and before.get("should_establish"))
        now = bool(after and after.get("should_establish"))
        if was == now:
            continue
        unit = after or before
        if now:
            reason = (f"{unit['full_members']} full members and no standalone organization: "
                      "should establish one (应建尽建)")
        elif unit["status"] != UnitStatus.active:
            reason = "unit deregistered"
        elif unit.get("standalone"):
            reason = "standalone organization established"
        else:
            reason = f"full members fell to {unit['full_members']}"
        uow.emit("coverage.alert_raised" if now else "coverage.alert_cleared", subject=unit["_id"],
                 division=unit["division"], data={
                     "unit_id": unit["_id"], "unit_name": unit["name"], "division": unit["division"],
                     "full_members": unit.get("full_members", 0), "reason": reason,
                 })
