"""Liveness and readiness probes: the only routes that need no credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..problems import PROBLEM_JSON, problem_body

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: database reachable, model loaded, workflows valid",
    responses={503: {"description": "Not ready: `checks` says what is not", "content": {PROBLEM_JSON: {}}}},
)
async def ready(request: Request) -> Any:
    from ..app import ServerState

    state: ServerState = request.app.state.nanobrain
    checks: dict[str, dict[str, Any]] = {}
    checks["accepting"] = {"ok": state.runs.accepting, "detail": "" if state.runs.accepting else "shutting down"}
    if state.chat is not None:
        checks["database"] = await _database(state)
        if state.model_ready.is_set():
            checks["model"] = {"ok": True, "detail": ", ".join(state.chat.models())}
        else:
            checks["model"] = {"ok": False, "detail": state.model_error or "still loading"}
    invalid = {}
    for name, workflow in state.workflows.items():
        problems = workflow.problems()
        if problems:
            invalid[name] = "; ".join(str(p) for p in problems[:3])
    checks["workflows"] = {"ok": not invalid, "detail": invalid or f"{len(state.workflows)} valid"}
    if state.health is not None:
        report = await state.health.check()
        checks.update({name: {"ok": result.ok, "detail": result.detail} for name, result in report.checks.items()})
    if all(check["ok"] for check in checks.values()):
        return {"status": "ready", "checks": checks}
    failing = ", ".join(name for name, check in checks.items() if not check["ok"])
    body = problem_body(503, f"not ready: {failing}", title="Not ready", extra={"checks": checks})
    return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)


async def _database(state: Any) -> dict[str, Any]:
    from sqlalchemy import text

    database = state.chat.database
    if database is None:
        return {"ok": True, "detail": "none"}
    try:
        async with database.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "detail": database.dialect}
