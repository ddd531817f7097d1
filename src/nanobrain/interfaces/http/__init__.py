"""The HTTP server: one FastAPI app (`create_app`) served by `nanobrain serve`.

Needs the `server` extra (fastapi, uvicorn, pyjwt): `pip install 'nanobrain[server]'`.
"""

from .app import PUBLIC_PATHS, ServerConfig, ServerState, create_app
from .auth import Authenticator, JwtSettings, Principal, RateLimits, needs
from .redis_nodes import RedisNodes
from .run_bus import RunBus
from .shared_limits import RedisRateLimits

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
