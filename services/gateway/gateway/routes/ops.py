"""What operators and Kubernetes probe: outside /api/v1, no authentication."""

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from service_kit import exposition

from ..problems import problem, problem_response

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

PING_TIMEOUT_SECONDS = 2.0


@router.get("/metrics", summary="Prometheus metrics (OpenMetrics when Accept asks for it)", response_class=Response)
async def metrics(request: Request):
    body, content_type = exposition.render(request.headers.get("accept"))
    return Response(body, media_type=content_type, headers=dict([exposition.VARY]))


@router.get("/healthz", summary="Alive")
async def healthz():
    return {"status": "alive"}


@router.get("/readyz", summary="Ready: MongoDB answers and both broker connections are open")
async def readyz(request: Request):
    state = request.app.state
    failures = []
    try:
        await asyncio.wait_for(state.db.command("ping"), PING_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to answer means not ready
        log.warning("readiness: MongoDB ping failed: %s", type(exc).__name__)
        failures.append("MongoDB does not answer")
    if not (state.rpc.connected and state.consumer.connected):
        failures.append("the message broker connection is down")
    if failures:
        return problem_response(problem(503, "; ".join(failures), title="Not ready"))
    return {"status": "ready"}
