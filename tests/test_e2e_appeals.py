"""Issue 14 end to end, on the platform as `make run` starts it: an operator registers a
department with a supervisor and routes a category of their district to it; a handler account is
scoped to the department. A worker submits an appeal with a location and a contact phone; the
handler sees `appeal.submitted` and its notification on the live stream, accepts it (its deadline
is set), assigns and resolves it; the worker is told, rates it "not solved" and it is reopened. A
second worker's appeal nearby is offered as a likely duplicate and merged into the first; when the
first is resolved again, both workers are told. An operator of another district sees none of it.
Illegal transitions are 409s, and of two accepts at once one succeeds. The phone is never shown
in full: not in any response, nor in any event on the stream."""

import threading
import uuid

import httpx
import pytest

from platform_testing import wait_for
from tests.test_e2e_transfers import PASSWORD, created, full_member, joint_branch, new_phone, ok, unit_body

pytestmark = pytest.mark.slow

DISTRICT, OTHER_DISTRICT = "370113", "370112"
STREET = "370113402"
WHERE = {"lng": 116.7455, "lat": 36.5561}  # Changqing, Jinan
NEARBY = {"lng": 116.7457, "lat": 36.5562}  # about 20 m away
CATEGORY = "labour_protection"


class Recorder:
    """Every response body any client of the test received, to search for the phone."""

    def __init__(self):
        self.texts: list[str] = []

    def client(self, platform, token: str) -> httpx.Client:
        def keep(response: httpx.Response) -> None:
            response.read()
            self.texts.append(response.text)
        return httpx.Client(base_url=f"{platform.gateway_url}/api/v1", headers={"Authorization": f"Bearer {token}"},
                            timeout=15, event_hooks={"response": [keep]})


def account(platform, admin, role: str, scope, prefix: str | None = None) -> tuple[str, str]:
    username = f"{prefix or role}{uuid.uuid4().hex[:6]}"
    created(admin.post("/users", json={"username": username, "password": PASSWORD, "role": role, "scope": scope}))
    return username, platform.token(username, PASSWORD)


def appeal_body(location: dict, phone: str, **extra) -> dict:
    return {"category": CATEGORY, "title": "站点附近没有休息区", "description": "夏季高温，骑手在路边等单，无处避暑",
            "division": STREET, "location": location, "address": "长清区大学路 1 号",
            "submitter": {"kind": "worker", "contact": {"name": "王骑手", "phone": phone}}, **extra}


def notified(stream, notice: str, subject: str) -> list[dict]:
    return [e["data"] for e in list(stream.events)
            if e["data"].get("type") == "notification.created" and e["data"]["data"]["type"] == notice
            and e["data"]["data"]["subject"] == subject]


def about(stream, appeal_ids) -> list[dict]:
    """The stream's events about these appeals: appeal.* events and notifications."""
    ids = set(appeal_ids)
    return [e["data"] for e in list(stream.events)
            if e["data"].get("subject") in ids or (e["data"].get("data") or {}).get("subject") in ids]


def test_an_appeal_is_routed_handled_rated_reopened_merged_and_resolved(platform, sse):
    recorder = Recorder()
    phones = [new_phone(), new_phone()]
    admin = recorder.client(platform, platform.admin_token())
    with admin:
        unit = created(admin.post("/units", json=unit_body(STREET)))
        branch = joint_branch(admin, STREET, unit["id"])
        members = [full_member(admin, branch, unit) for _ in range(2)]
        _, operator_token = account(platform, admin, "operator", DISTRICT)
        _, outsider_token = account(platform, admin, "operator", OTHER_DISTRICT, "outsider")
        supervisor, _ = account(platform, admin, "operator", STREET, "chief")
        workers = [account(platform, admin, "worker", m["id"], "rider") for m in members]
        with recorder.client(platform, operator_token) as operator:
            department = created(operator.post("/departments", json={
                "name": "长清区人社局劳动保障监察大队", "division": DISTRICT, "supervisor": supervisor,
                "kind": "labour_security"}))
            assert department["supervisor"] == supervisor
            handler, handler_token = account(platform, admin, "handler", [department["id"]], "handler")
            route = ok(operator.put("/appeal-routing", json={"category": CATEGORY, "division": DISTRICT,
                                                             "department_id": department["id"]}))
            assert route["department_id"] == department["id"]
            assert any(r["department_id"] == department["id"] for r in ok(operator.get("/appeal-routing"))["items"])
            assert ok(operator.get(f"/departments/{department['id']}"))["name"] == department["name"]
            # A supervisor must be an account the platform knows.
            unknown = operator.post("/departments", json={"name": "无人部门", "division": DISTRICT,
                                                          "supervisor": f"nobody{uuid.uuid4().hex[:6]}"})
            assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["body", "supervisor"]

    (worker_name, worker_token), (second_name, second_token) = workers
    handler_stream = sse({"types": "appeal.*,notification.created"}, token=handler_token)
    worker_stream = sse({"types": "appeal.*,notification.created"}, token=worker_token)
    second_stream = sse({"types": "appeal.*,notification.created"}, token=second_token)
    outsider_stream = sse({}, token=outsider_token)
    everything = sse({})  # the admin's: every event, to search for the phone

    worker = recorder.client(platform, worker_token)
    second = recorder.client(platform, second_token)
    desk = recorder.client(platform, handler_token)
    outsider = recorder.client(platform, outsider_token)
    with worker, second, desk, outsider:
        # ---- submitted and routed: the department's handler is told ----
        first = created(worker.post("/appeals", json=appeal_body(WHERE, phones[0]),
                                    headers={"X-Device-Id": f"phone-{uuid.uuid4().hex[:8]}"}))
        appeal_id = first["id"]
        assert first["status"] == "submitted" and first["department"] == department["id"]
        assert first["likely_duplicates"] == [] and first["raised_by"] == worker_name
        assert first["submitter"]["contact"]["phone"] not in (None, phones[0])
        handler_stream.wait_for(lambda e: e["type"] == "appeal.submitted" and e["subject"] == appeal_id)
        wait_for(lambda: notified(handler_stream, "appeal.submitted", appeal_id), what="the handler's notification")
        assert appeal_id in {a["id"] for a in ok(desk.get("/appeals"))["items"]}
        assert any(n["subject"] == appeal_id and n["type"] == "appeal.submitted"
                   for n in ok(desk.get("/notifications"))["items"])

        # ---- accepted (the deadline starts), assigned, resolved ----
        accepted = ok(desk.post(f"/appeals/{appeal_id}/accept", json={"note": "已受理"}))
        assert accepted["status"] == "accepted" and accepted["due_at"] is not None
        again = desk.post(f"/appeals/{appeal_id}/accept", json={})
        assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
        assert worker.post(f"/appeals/{appeal_id}/rate", json={"rating": 5, "solved": True}).status_code == 409
        # Only a handler of the appeal's department may be assigned it.
        stranger = desk.post(f"/appeals/{appeal_id}/assign", json={"handler": worker_name})
        assert stranger.status_code == 422 and stranger.json()["errors"][0]["loc"] == ["body", "handler"]
        assigned = ok(desk.post(f"/appeals/{appeal_id}/assign", json={"handler": handler}))
        assert assigned["status"] == "assigned" and assigned["handler"] == handler
        wait_for(lambda: notified(handler_stream, "appeal.assigned", appeal_id), what="the assignment's notification")
        resolved = ok(desk.post(f"/appeals/{appeal_id}/resolve", json={"resolution": "已协调平台在站点设置休息区"}))
        assert resolved["status"] == "resolved"

        # ---- the worker is told, rates it "not solved": reopened ----
        worker_stream.wait_for(lambda e: e["type"] == "appeal.resolved" and e["subject"] == appeal_id)
        wait_for(lambda: notified(worker_stream, "appeal.resolved", appeal_id), what="the worker told of the resolution")
        rated = ok(worker.post(f"/appeals/{appeal_id}/rate", json={"rating": 1, "solved": False,
                                                                    "comment": "休息区还没有建"}))
        assert rated["status"] == "accepted"  # back to the department
        handler_stream.wait_for(lambda e: e["type"] == "appeal.reopened" and e["subject"] == appeal_id)
        wait_for(lambda: notified(handler_stream, "appeal.reopened", appeal_id), what="the handler told of the reopening")

        # ---- a second worker's appeal nearby: a likely duplicate, merged ----
        duplicate = created(second.post("/appeals", json=appeal_body(NEARBY, phones[1])))
        assert appeal_id in [a["id"] for a in duplicate["likely_duplicates"]]
        nearby = ok(desk.get("/appeals/nearby", params={"near": f"{WHERE['lng']},{WHERE['lat']}",
                                                          "category": CATEGORY, "radius_m": 100}))["items"]
        distances = {a["id"]: a["distance_m"] for a in nearby}
        assert {appeal_id, duplicate["id"]} <= set(distances) and distances[appeal_id] < 1 < distances[duplicate["id"]]
        merged = ok(desk.post(f"/appeals/{duplicate['id']}/merge", json={"into": appeal_id}))
        assert merged["status"] == "closed" and merged["duplicate_of"] == appeal_id
        assert duplicate["id"] in ok(desk.get(f"/appeals/{appeal_id}"))["duplicates"]
        assert desk.post(f"/appeals/{duplicate['id']}/merge", json={"into": appeal_id}).status_code == 409

        # ---- resolved again: both workers are told ----
        ok(desk.post(f"/appeals/{appeal_id}/resolve", json={"resolution": "休息区已建成并投入使用"}))
        for stream, who in ((worker_stream, "the first worker"), (second_stream, "the second worker")):
            wait_for(lambda: len(notified(stream, "appeal.resolved", appeal_id)) >= (2 if stream is worker_stream else 1),
                     what=f"{who} told of the resolution")
        assert ok(second.get(f"/appeals/{appeal_id}"))["status"] == "resolved"  # theirs too, now

        # ---- two accepts at once: one is accepted, the other is a 409 ----
        third = created(second.post("/appeals", json=appeal_body(WHERE, phones[1], title="驿站饮水机坏了")))
        statuses = []

        def accept(client: httpx.Client) -> None:
            statuses.append(client.post(f"/appeals/{third['id']}/accept", json={}).status_code)
        desks = [recorder.client(platform, handler_token) for _ in range(2)]
        threads = [threading.Thread(target=accept, args=(client,)) for client in desks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for client in desks:
            client.close()
        assert sorted(statuses) == [200, 409], statuses

        # ---- an operator of another district sees none of it ----
        ours = {appeal_id, duplicate["id"], third["id"]}
        assert not ours & {a["id"] for a in ok(outsider.get("/appeals", params={"limit": 500}))["items"]}
        for some in ours:
            assert outsider.get(f"/appeals/{some}").status_code in (403, 404)
        assert outsider.post(f"/appeals/{third['id']}/resolve", json={"resolution": "越权"}).status_code in (403, 404)
        asked = outsider.get("/appeals", params={"division": DISTRICT})
        assert asked.status_code == 403 or not ours & {a["id"] for a in asked.json()["items"]}, asked.text
        departments = ok(outsider.get("/departments", params={"limit": 500}))["items"]
        assert department["id"] not in {d["id"] for d in departments}
        # Events reach a stream in log order: once the outsider's stream has a unit of their own
        # district registered after all that, it has been sent (or spared) everything before.
        with platform.client() as api:
            beacon = created(api.post("/units", json=unit_body(OTHER_DISTRICT + "402")))
        outsider_stream.wait_for(lambda e: e["type"] == "unit.registered" and e["subject"] == beacon["id"])
        assert not about(outsider_stream, ours)
        # The first worker raised neither the third appeal nor anything merged into it: by the
        # time their own next appeal reaches their stream, nothing of the third has.
        fourth = created(worker.post("/appeals", json=appeal_body(WHERE, phones[0], category="suggestion",
                                                                  title="建议增设充电柜")))
        worker_stream.wait_for(lambda e: e["type"] == "appeal.submitted" and e["subject"] == fourth["id"])
        assert not about(worker_stream, {third["id"]})

    # ---- the phones never appear in full ----
    everything.wait_for(lambda e: e["type"] == "appeal.submitted" and e["subject"] == fourth["id"])
    for phone in phones:
        assert not [t for t in recorder.texts if phone in t], "a response showed a phone in full"
        for stream in (everything, handler_stream, worker_stream, second_stream):
            assert not [e for e in list(stream.events) if phone in str(e)], "an event carried a phone in full"
