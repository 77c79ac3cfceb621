"""Open311 GeoReport v2 on the gateway (CONTRACT.md: other interfaces): the /open311/v2/ routes
(routes.py), their two formats (render.py), what maps them to the appeal service's contract
(mapping.py), the API keys and tokens kept in the gateway's database (store.py) and the admins'
routes for the keys under /api/v1/open311/api-keys (keys_routes.py)."""

from fastapi import APIRouter
from pymongo.asynchronous.database import AsyncDatabase

from . import keys_routes, routes
from .store import Open311Store

router = APIRouter()
router.include_router(keys_routes.router)
router.include_router(routes.router)


async def ensure_indexes(db: AsyncDatabase) -> None:
    await Open311Store(db).ensure_indexes()
