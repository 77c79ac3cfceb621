"""What is away answers 503 with Retry-After: the gateway's database, the broker, a service."""

import httpx
from fastapi import FastAPI
from pymongo.errors import AutoReconnect, OperationFailure, ServerSelectionTimeoutError

from gateway.problems import ApiProblem, install


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/")
    async def fail():
        raise error

    return app


async def get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.get("/")


async def test_database_unreachable_is_a_503_with_retry_after():
    for error in (ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"), AutoReconnect("reset")):
        response = await get(app_raising(error))
        assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
        assert "127.0.0.1" not in response.text


async def test_other_database_errors_stay_500():
    response = await get(app_raising(OperationFailure("bad query", code=2)))
    assert response.status_code == 500 and "retry-after" not in response.headers
    assert "bad query" not in response.text


async def test_every_503_says_when_to_retry():
    response = await get(app_raising(ApiProblem.of(503, "service organization is not running")))
    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    given = await get(app_raising(ApiProblem.of(503, "busy", headers={"Retry-After": "30"})))
    assert given.headers["retry-after"] == "30"
