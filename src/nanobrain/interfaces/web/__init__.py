"""The web UI: static files shipped in the package, served by `nanobrain serve` at `/`.

No build step and no CDN: the page is plain JavaScript modules that talk only to the server's
own API (`/v1/...`). Every UI response carries a Content-Security-Policy that allows scripts,
styles and connections from the server itself only, so text from a model or a stored history
cannot run as code even if it slipped into the page as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC_DIR = Path(__file__).with_name("static")
"""Where the UI's files are (index.html, the scripts and the style sheet)."""

UI_PREFIX = "/ui"
"""The URL prefix of the UI's assets; the page itself is `/`."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
UI_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and changes with the package: always revalidate, never serve a stale one.
    "Cache-Control": "no-cache",
}


def mount_ui(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under `/ui` (public: the data they show needs a key)."""
    from fastapi.responses import FileResponse
    from starlette.staticfiles import StaticFiles

    class _UiFiles(StaticFiles):
        async def get_response(self, path: str, scope: Any) -> Any:
            response = await super().get_response(path, scope)
            response.headers.update(UI_HEADERS)
            return response

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=UI_HEADERS)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(UI_PREFIX, _UiFiles(directory=STATIC_DIR), name="ui")


__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "UI_PREFIX", "mount_ui"]
