"""Who reaches the member and transfer endpoints. Scope is the member service's to judge (it
decides on the records themselves: an operator by division, a secretary by organization, a
worker as the member); the gateway only admits the roles that have any say over members."""

from typing import Annotated

from fastapi import Depends

from .auth import ADMIN, OPERATOR, SECRETARY, WORKER, Principal, require_role
from .deps import current_principal

MEMBER_ROLES = frozenset({ADMIN, OPERATOR, SECRETARY, WORKER})


async def member_caller(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Any authenticated, active admin, operator, secretary or worker."""
    require_role(principal, MEMBER_ROLES)
    return principal


MemberCaller = Annotated[Principal, Depends(member_caller)]
