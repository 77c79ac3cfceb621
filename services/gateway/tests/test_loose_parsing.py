"""Loosely parsed input answered with a 500 or a broken stream instead of a 4xx naming the field."""

import json

import pytest
import websockets

pytestmark = pytest.mark.timeout(60)

STREAM = "/api/v1/events/stream"


def ws_url(gateway, token) -> str:
    return gateway.url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={token}"


@pytest.mark.parametrize("last_event_id", ["²".encode("latin-1"), b"9" * 20, "١٢".encode("utf-8")],
                         ids=["superscript-two", "twenty-digits", "arabic-indic-digits"])
def test_last_event_id_of_non_ascii_or_overflowing_digits_is_refused(gateway, admin, last_event_id):
    with admin.stream("GET", STREAM, headers={"Last-Event-ID": last_event_id}) as response:
        assert response.status_code == 422
        response.read()
    assert response.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


def test_last_event_id_query_parameter_that_overflows_is_refused(gateway, admin):
    with admin.stream("GET", STREAM, params={"last_event_id": "1" + "0" * 19}) as response:
        assert response.status_code == 422
        response.read()
    assert response.json()["errors"][0]["loc"] == ["query", "last_event_id"]


async def test_websocket_last_event_id_that_overflows_is_refused(gateway, admin_token):
    async with websockets.connect(ws_url(gateway, admin_token)) as socket:
        for too_big in (10**20, "9" * 20, "²"):
            await socket.send(json.dumps({"subscribe": {"last_event_id": too_big}}))
            reply = json.loads(await socket.recv())
            assert reply["error"]["status"] == 422, reply
            assert reply["error"]["errors"][0]["loc"] == ["subscribe", "last_event_id"]


@pytest.mark.parametrize("method, path", [("GET", "/api/v1/admin/dead-letters"),
                                          ("POST", "/api/v1/admin/dead-letters/replay")])
def test_dead_letters_of_an_unknown_service_is_a_422_not_a_503(admin, method, path):
    response = admin.request(method, path, params={"service": "q"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "service"]
