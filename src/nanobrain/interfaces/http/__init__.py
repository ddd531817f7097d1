"""The HTTP server: one FastAPI app (`create_app`) served by `nanobrain serve`.

Needs the `server` extra (fastapi, uvicorn, pyjwt): `pip install 'nanobrain[server]'`.
"""

from ...optional import require

# Before any module of this package imports FastAPI: a missing server extra is named.
require("fastapi", extra="server", purpose="the HTTP server")

from .app import PUBLIC_PATHS, ServerConfig, ServerState, create_app  # noqa: E402
from .auth import Authenticator, JwtSettings, Principal, RateLimits, needs  # noqa: E402
from .redis_nodes import RedisNodes  # noqa: E402
from .run_bus import RunBus  # noqa: E402
from .shared_limits import RedisRateLimits  # noqa: E402

__all__ = [
    "PUBLIC_PATHS",
    "Authenticator",
    "JwtSettings",
    "Principal",
    "RateLimits",
    "RedisNodes",
    "RedisRateLimits",
    "RunBus",
    "ServerConfig",
    "ServerState",
    "create_app",
    "needs",
]
