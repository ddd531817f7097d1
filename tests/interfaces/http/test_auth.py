"""Keys, roles, JWT, rate limits and safe binding; every route of the app is checked for 401 and 403."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from tests.interfaces.http.conftest import LiveServer, headers, start_server

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.security.api_keys import ROLES, ApiKeyError, ApiKeyNotFound, ApiKeyStore
from nanobrain.interfaces.http import PUBLIC_PATHS, JwtSettings, RateLimits
from nanobrain.interfaces.http.app import create_app
from nanobrain.interfaces.http.serve import UnsafeBind, check_bind, is_loopback
from nanobrain.llm import ScriptedModel

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(role: Any = None, *, secret: str = SECRET, expires_in: float = 60, **claims: Any) -> str:
    payload = {"sub": "jwt-user", "exp": int(time.time() + expires_in), **claims}
    if role is not None:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.fixture
def jwt_server(tmp_path: Path, model: ScriptedModel) -> Iterator[LiveServer]:
    live = start_server(tmp_path, model, authenticator_options={"jwt": JwtSettings(secret=SECRET)})
    yield live
    live.close()


def routes(app: Any) -> list[tuple[str, str, str | None]]:
    """(method, path, role) of every operation of the app, from its OpenAPI document."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            found.append((method.upper(), path, operation.get("x-required-role")))
    return found


def test_every_route_but_the_public_ones_declares_a_role() -> None:
    app = create_app()
    listed = routes(app)
    assert len(listed) >= 15
    for method, path, role in listed:
        if path in PUBLIC_PATHS:
            assert role is None, path
        else:
            assert role in ROLES, (method, path)
    # Routes hidden from the OpenAPI document would escape the enumeration below: there are none.
    documented = {path for _, path, _ in listed}
    for route in app.routes:
        path = getattr(route, "path", None)
        if path is not None and path not in PUBLIC_PATHS:
            assert path in documented, path


def test_every_protected_route_answers_401_without_credentials_and_403_with_too_little_role(
    jwt_server: LiveServer,
) -> None:
    below = {"read": token(role=None), "run": jwt_server.keys["read"], "admin": jwt_server.keys["run"]}  # type: ignore[attr-defined]
    checked = 0
    for method, path, role in routes(jwt_server.app):
        if path in PUBLIC_PATHS:
            continue
        assert role is not None
        url = jwt_server.url + re.sub(r"\{[^}]+\}", "x", path)
        missing = httpx.request(method, url, json={})
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.request(method, url, json={}, headers={"Authorization": "Bearer nb_0000000000000000_" + "x" * 43})
        assert wrong.status_code == 401, (method, path)
        lacking = httpx.request(method, url, json={}, headers={"Authorization": f"Bearer {below[role]}"})
        assert lacking.status_code == 403, (method, path, lacking.text)
        assert role in lacking.json()["detail"]
        checked += 1
    assert checked >= 15


def test_public_routes_need_no_credentials(server: LiveServer) -> None:
    for path in ("/health", "/ready", "/openapi.json", "/docs"):
        assert httpx.get(server.url + path).status_code in (200, 503), path


def test_the_x_api_key_header_works_and_revoked_keys_stop_working(server: LiveServer) -> None:
    key = server.keys["read"]  # type: ignore[attr-defined]
    assert httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": key}).status_code == 200
    store = ApiKeyStore(server.app.state.nanobrain.chat.database)

    async def revoke() -> None:
        [found] = [k for k in await store.list() if k.name == "read-key"]
        await store.revoke(found.id)

    server.call(revoke)
    refused = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": key})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_jwt_roles_come_from_the_claim(jwt_server: LiveServer, model: ScriptedModel) -> None:
    model.add("hello")
    url = f"{jwt_server.url}/v1/chat/completions"
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token(['read', 'run'])}"})
    assert ok.status_code == 200, ok.text
    reader = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token('read')}"})
    assert reader.status_code == 403
    for bad in (token("run", expires_in=-10), token("run", secret="another-secret-entirely-of-enough-length")):
        refused = httpx.post(url, json=body, headers={"Authorization": f"Bearer {bad}"})
        assert refused.status_code == 401 and "bearer token is not valid" in refused.json()["detail"]


def test_open_mode_acts_as_a_local_admin(tmp_path: Path, model: ScriptedModel) -> None:
    live = start_server(tmp_path, model, auth=False)
    try:
        assert httpx.get(f"{live.url}/v1/sessions").status_code == 200
        assert httpx.delete(f"{live.url}/v1/sessions/none").status_code == 404
    finally:
        live.close()


def test_rate_limits_answer_429_with_retry_after(tmp_path: Path, model: ScriptedModel) -> None:
    live = start_server(tmp_path, model, authenticator_options={"rate_limits": RateLimits(0.5, burst=2)})
    try:
        read = headers(live, "read")
        statuses = [httpx.get(f"{live.url}/v1/models", headers=read).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = httpx.get(f"{live.url}/v1/models", headers=read)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # Each key has its own bucket; probes are never limited.
        assert httpx.get(f"{live.url}/v1/models", headers=headers(live, "run")).status_code == 200
        assert httpx.get(f"{live.url}/health").status_code == 200
    finally:
        live.close()


# -- the key store -----------------------------------------------------------------------------------
async def test_keys_are_stored_hashed_listed_and_revoked(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    store = ApiKeyStore(database)
    key, secret = await store.create("ci", "read")
    assert secret.startswith(f"nb_{key.id}_") and len(secret) > 50
    assert secret.encode() not in (tmp_path / "keys.db").read_bytes()
    assert (await store.verify(secret)) == key
    assert await store.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert await store.verify("not-a-key") is None
    assert [k.name for k in await store.list()] == ["ci"] and await store.active_count() == 1
    revoked = await store.revoke(key.id)
    assert revoked.revoked_at is not None and await store.verify(secret) is None
    assert await store.active_count() == 0 and await store.list(include_revoked=False) == []
    assert await database.schema_version("api_keys") == 1
    with pytest.raises(ApiKeyNotFound, match="no API key with id 'nope'"):
        await store.revoke("nope")
    with pytest.raises(ApiKeyError, match="unknown role 'root'"):
        await store.create("x", "root")
    with pytest.raises(ApiKeyError, match="needs a name"):
        await store.create("  ", "run")
    await database.aclose()


# -- binding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
                                                ("example.org", False)])  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_public_bind_without_auth_is_refused_with_instructions() -> None:
    check_bind("127.0.0.1", auth_configured=False, insecure=False)
    check_bind("0.0.0.0", auth_configured=True, insecure=False)
    check_bind("0.0.0.0", auth_configured=False, insecure=True)
    with pytest.raises(UnsafeBind, match=r"nanobrain keys create NAME --role run.*--insecure"):
        check_bind("0.0.0.0", auth_configured=False, insecure=False)


async def test_concurrent_requests_with_one_key_share_one_lookup(tmp_path: Path) -> None:
    import asyncio

    from nanobrain.interfaces.http import Authenticator

    class Counting(ApiKeyStore):
        lookups = 0

        async def verify(self, secret: str) -> Any:
            Counting.lookups += 1
            await asyncio.sleep(0.05)
            return await super().verify(secret)

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    store = Counting(database)
    _, secret = await store.create("busy", "run")
    auth = Authenticator(store, cache_seconds=5)
    principals = await asyncio.gather(*(auth.authenticate(secret) for _ in range(50)))
    assert {p.name for p in principals} == {"busy"} and Counting.lookups == 1
    await database.aclose()
