"""The caller's notifications (those addressed to them), with a read flag of their own."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from . import API
from ..auth import Principal
from ..deps import Cursor, EntityId, Limit, current_principal
from ..notifications import NotificationStore
from ..problems import ApiProblem
from ..schemas import NotificationItem, Page, QueryBool

router = APIRouter(prefix=f"{API}/notifications", tags=["notifications"])

Anyone = Annotated[Principal, Depends(current_principal)]


def store(request: Request) -> NotificationStore:
    return request.app.state.notifications


Store = Annotated[NotificationStore, Depends(store)]


@router.get("", response_model=Page[NotificationItem], summary="Your notifications, newest first")
async def list_notifications(
    caller: Anyone, notifications: Store,
    unread: Annotated[QueryBool | None, Query(description="true: only unread; false: only read")] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    if cursor is not None and not cursor.isdigit():
        raise ApiProblem.invalid(["query", "cursor"], "must be a next_cursor from a previous page")
    items, last = await notifications.list_for(caller, unread, limit, int(cursor) if cursor else None)
    return {"items": items, "next_cursor": None if last is None else str(last)}


@router.post("/{notification_id}/read", response_model=NotificationItem, summary="Mark it read (for you only)")
async def mark_read(notification_id: EntityId, caller: Anyone, notifications: Store):
    item = await notifications.mark_read(notification_id, caller)
    if item is None:
        raise ApiProblem.of(404, "no such notification for you")
    return item
