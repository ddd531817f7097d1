"""The HTTP server: one FastAPI app (`create_app`) served by `nanobrain serve`.

Needs the `server` extra (fastapi, uvicorn, pyjwt): `pip install 'nanobrain[server]'`.
"""

from .app import PUBLIC_PATHS, ServerConfig, ServerState, create_app
from .auth import Authenticator, JwtSettings, Principal, RateLimits, needs

__all__ = [
    "PUBLIC_PATHS",
    "Authenticator",
    "JwtSettings",
    "Principal",
    "RateLimits",
    "ServerConfig",
    "ServerState",
    "create_app",
    "needs",
]
