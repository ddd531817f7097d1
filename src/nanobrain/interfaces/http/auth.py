"""Authentication and roles: the one dependency every router except health depends on.

Each route declares the role it needs with `needs(role)` (it shows in the OpenAPI document as
`x-required-role`); `authorize` reads it from the matched route, so no route can forget to say.
Credentials: an API key (`Authorization: Bearer nb_...` — what OpenAI clients send — or
`X-API-Key`), or a JWT bearer token when JWT is configured. Without keys and JWT ("open" mode,
allowed on a loopback address only) every request acts as a local admin.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ...infrastructure.parallel.rate_limit import TokenBucket
from ...infrastructure.security.api_keys import ROLES, ApiKey, ApiKeyStore, role_allows
from .problems import PROBLEM_JSON, ApiProblem

ROLE_KEY = "x-required-role"


def needs(role: str) -> dict[str, Any]:
    """Route options declaring the role a route needs: `@router.get(path, **needs("read"))`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return {"openapi_extra": {ROLE_KEY: role}}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a key's name, a token's subject, or `local` in open mode. `role` None: no role."""

    name: str
    role: str | None
    kind: str  # "key", "jwt" or "open"
    id: str = ""


@dataclass(frozen=True)
class JwtSettings:
    """Accept JWT bearer tokens signed with `secret` (HS*) or `public_key` (RS*/ES*).

    The role is the highest of NanoBrain's roles found in `role_claim` (a string or a list).
    """

    secret: str | None = None
    public_key: str | None = None
    algorithms: tuple[str, ...] = ("HS256",)
    issuer: str | None = None
    audience: str | None = None
    role_claim: str = "role"

    def __post_init__(self) -> None:
        if not (self.secret or self.public_key):
            raise ValueError("JWT needs a secret (HS256) or a public key (RS256, ES256)")


@dataclass
class RateLimits:
    """Per-principal request limits: `requests_per_second` with a `burst`."""

    requests_per_second: float
    burst: float | None = None
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def retry_after(self, who: str) -> float | None:
        """None when the request may go ahead (and is counted); else seconds to wait."""
        bucket = self.buckets.get(who)
        if bucket is None:
            bucket = self.buckets[who] = TokenBucket(self.requests_per_second, self.burst)
        if bucket.try_take():
            return None
        now = bucket.clock.now()
        return max(0.0, bucket.ready_at(1.0, now) - now)

    async def acquire(self, who: str) -> float | None:
        """`retry_after`, as the authenticator asks it (limits shared through Redis must await)."""
        return self.retry_after(who)


class RequestLimits(Protocol):
    """What the authenticator asks of rate limits: `RateLimits` (this process), `RedisRateLimits` (all replicas)."""

    requests_per_second: float

    async def acquire(self, who: str) -> float | None:
        """None when the request may go ahead (and is counted); else seconds to wait."""


class Authenticator:
    """Turns a request's credentials into a Principal; `required=False` is open mode."""

    def __init__(
        self,
        keys: ApiKeyStore | None = None,
        *,
        jwt: JwtSettings | None = None,
        required: bool = True,
        cache_seconds: float = 5.0,
        rate_limits: RequestLimits | None = None,
    ) -> None:
        if required and keys is None and jwt is None:
            raise ValueError("authentication is required but neither API keys nor JWT are configured")
        self.keys = keys
        self.jwt = jwt
        self.required = required
        self.cache_seconds = cache_seconds
        self.rate_limits = rate_limits
        # Checked keys by the hash of their text: a revoked key stops working within cache_seconds.
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._checking: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def authenticate(self, token: str | None) -> Principal:
        if not self.required:
            return Principal("local", "admin", "open")
        if not token:
            raise _unauthorized("this endpoint needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
        if token.startswith("nb_") and self.keys is not None:
            return await self._key(token)
        if self.jwt is not None:
            return self._token(token)
        raise _unauthorized("the API key is not valid (unknown, revoked or malformed)")

    async def _key(self, token: str) -> Principal:
        assert self.keys is not None
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        # One lookup per key at a time: when its cache entry expires under load, the requests
        # that arrive meanwhile wait for that lookup instead of each querying the database.
        checking = self._checking.get(digest)
        if checking is None:
            checking = self._checking[digest] = asyncio.ensure_future(self.keys.verify(token))
            checking.add_done_callback(lambda _: self._checking.pop(digest, None))
        key = await asyncio.shield(checking)
        if key is None:
            self._cache.pop(digest, None)
            raise _unauthorized("the API key is not valid (unknown, revoked or malformed)")
        principal = Principal(key.name, key.role, "key", key.id)
        if self.cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + self.cache_seconds)
        return principal

    def _token(self, token: str) -> Principal:
        import jwt as pyjwt

        settings = self.jwt
        assert settings is not None
        key = settings.public_key or settings.secret
        assert key is not None  # JwtSettings insists on one
        try:
            claims = pyjwt.decode(
                token,
                key,
                algorithms=list(settings.algorithms),
                issuer=settings.issuer,
                audience=settings.audience,
                options={"require": ["exp", "sub"], "verify_aud": settings.audience is not None},
            )
        except pyjwt.PyJWTError as exc:
            raise _unauthorized(f"the bearer token is not valid: {exc}") from None
        found = claims.get(settings.role_claim)
        values = found if isinstance(found, list) else [found]
        roles = [r for r in values if r in ROLES]
        role = max(roles, key=ROLES.index) if roles else None
        return Principal(str(claims["sub"]), role, "jwt", str(claims["sub"]))


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="nanobrain"'})


_bearer = HTTPBearer(auto_error=False, description="An API key (`nanobrain keys create`) or a JWT")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (`nanobrain keys create`)")


async def authorize(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008 (FastAPI's idiom)
    api_key: str | None = Depends(_api_key),
) -> Principal:
    """The dependency of every protected router: who asks, and may they do what the route needs."""
    route = request.scope.get("route")
    needed = (getattr(route, "openapi_extra", None) or {}).get(ROLE_KEY)
    if needed is None:  # create_app checks every route declares one; this is the last line of defence
        raise ApiProblem(403, f"route {request.url.path} declares no role, so nobody may use it")
    auth: Authenticator = request.app.state.nanobrain.auth
    principal = await auth.authenticate(api_key or (bearer.credentials if bearer else None))
    if principal.role is None or not role_allows(principal.role, needed):
        has = f"role {principal.role!r}" if principal.role else "no role"
        raise ApiProblem(403, f"{principal.kind} {principal.name!r} has {has}; this needs role {needed!r} or higher")
    if auth.rate_limits is not None:
        wait = await auth.rate_limits.acquire(f"{principal.kind}:{principal.id or principal.name}")
        if wait is not None:
            raise ApiProblem(
                429,
                f"rate limit of {auth.rate_limits.requests_per_second:g} requests/s exceeded; retry in {wait:.2f}s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    request.state.principal = principal
    return principal


_COMMON_ERRORS = {
    400: "Malformed request (the body is not JSON, or a header is invalid)",
    401: "No credentials, or invalid ones",
    403: "The credentials' role may not do this",
    404: "No such workflow, run, session or model (`errors` names which)",
    413: "The request body is too large",
    422: "Invalid request: `errors` names each field",
    429: "Rate limit exceeded: retry after `Retry-After` seconds",
}


def protected_router(tag: str) -> APIRouter:
    """A router whose every route depends on `authorize` (declare each route's role with `needs`)."""
    responses: dict[int | str, dict[str, Any]] = {
        code: {"description": text, "content": {PROBLEM_JSON: {}}} for code, text in _COMMON_ERRORS.items()
    }
    return APIRouter(tags=[tag], dependencies=[Depends(authorize)], responses=responses)
