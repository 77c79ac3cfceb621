"""Request rate limits, per caller and per replica, for every REST operation: a signed-in user
by their account (RATE_LIMIT_PER_USER), anyone else by client address (RATE_LIMIT_PER_ADDRESS,
tighter: login, the probes of the unauthenticated). Beyond it, 429 with Retry-After and
nothing done. Streams keep their own limits (routes/stream.py); logins theirs too
(login_guard.py, counted in MongoDB across replicas). These limits are kept in memory by each
replica (the `limits` library's moving window): a caller's budget is the limit times the
replicas its requests are spread over, a bound on abuse rather than an exact quota, at no
database round trip per request."""

import math
import time

import jwt
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .auth import JWT_ALGORITHM
from .metrics import RATE_LIMITED
from .problems import problem, problem_response

# The live-event streams are long-lived and limited per user by routes/stream.py.
UNLIMITED_PREFIXES = ("/api/v1/events/",)


class RateLimitMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), so that responses stream through untouched."""

    def __init__(self, app, jwt_secret: str, per_user: str, per_address: str):
        self.app = app
        self.jwt_secret = jwt_secret
        self.per_user, self.per_address = parse(per_user), parse(per_address)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def _caller(self, scope) -> tuple[str, str, object]:
        """(kind, key, limit): the account a valid bearer token names, else the client address."""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                try:
                    claims = jwt.decode(value[7:].decode("latin-1"), self.jwt_secret, algorithms=[JWT_ALGORITHM])
                except jwt.InvalidTokenError:
                    break  # refused as 401 by the route; limited by address meanwhile
                return "user", f"user:{claims.get('uid') or claims.get('sub')}", self.per_user
        client = scope.get("client")
        return "address", f"address:{client[0] if client else 'unknown'}", self.per_address

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path.startswith(UNLIMITED_PREFIXES):
            return await self.app(scope, receive, send)
        kind, key, limit = self._caller(scope)
        if self.limiter.hit(limit, key):
            return await self.app(scope, receive, send)
        RATE_LIMITED.labels(kind).inc()
        reset = self.limiter.get_window_stats(limit, key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        response = problem_response(
            problem(429, f"more than {limit} requests from this {'account' if kind == 'user' else 'address'}: "
                         f"wait {retry_after} s"),
            {"Retry-After": str(retry_after)})
        await response(scope, receive, send)
