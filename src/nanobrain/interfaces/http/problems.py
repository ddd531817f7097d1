"""Errors as `application/problem+json` (RFC 9457): client mistakes are 4xx naming the field.

Every error the server answers goes through here, so the body always has `type`, `title`,
`status` and `detail`; `errors` lists each bad field (`body.inputs.count`) with what is wrong.
Failures of a language-model provider become 502/503/504 with the provider's reason, scrubbed of
anything that looks like a credential. On the OpenAI-compatible routes the body also carries
OpenAI's `error` object, so OpenAI clients show the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...core.errors import NanoBrainError, ProblemsError, UnitTypeError
from ...llm import errors as llm_errors

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("nanobrain.http")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    502: "Model provider failed",
    503: "Service unavailable",
    504: "Model provider timed out",
}


FAILURES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {}}}
    for code, text in {
        500: "The run failed (a step raised); `detail` says where and why",
        502: "A model provider failed",
        503: "A model provider is unavailable, or the server is shutting down",
        504: "A model provider or a step timed out",
    }.items()
}
"""The responses of routes that run workflows."""


class ApiProblem(Exception):
    """Raise to answer with a problem: `errors` names each bad field (`[{"field": ..., "message": ...}]`)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @classmethod
    def field(cls, status: int, field: str, message: str, **kwargs: Any) -> ApiProblem:
        """A problem with one field: the detail reads `field: message`."""
        return cls(status, f"{field}: {message}", errors=[{"field": field, "message": message}], **kwargs)


def problem_body(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [dict(e) for e in errors]
    body.update(extra or {})
    return body


def problem_response(request: Request | None, problem: ApiProblem) -> JSONResponse:
    body = problem_body(
        problem.status,
        problem.detail,
        title=problem.title,
        errors=problem.errors,
        instance=request.url.path if request is not None else None,
        extra=problem.extra,
    )
    if request is not None and _openai_route(request.url.path):
        first = problem.errors[0]["field"] if problem.errors else None
        body["error"] = {
            "message": problem.detail,
            "type": "invalid_request_error" if problem.status < 500 else "server_error",
            "param": first,
            "code": problem.extra.get("code"),
        }
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def encode_problem(problem: ApiProblem, *, path: str = "") -> bytes:
    """A problem's body as bytes (for middleware that answers before the app does)."""
    import json

    body = problem_body(problem.status, problem.detail, title=problem.title, errors=problem.errors, instance=path)
    return json.dumps(body).encode("utf-8")


def _openai_route(path: str) -> bool:
    return path.startswith(("/v1/chat/", "/v1/models"))


# -- classifying exceptions ------------------------------------------------------------------------
# Key-shaped words the shared redaction cannot know about (it masks URLs, bearer tokens,
# `api_key=...` values and configured secrets): provider and NanoBrain keys quoted in an error.
_KEY_SHAPED = re.compile(r"\b(sk|nb|pk)[-_][A-Za-z0-9_-]{8,}")
_ASSIGNED = re.compile(r"(?i)((?:token|secret|password)\s*[=:]\s*)[^\s,;&]+")


def scrub(text: str) -> str:
    """`text` without anything that looks like a credential (keys, bearer tokens, URL passwords)."""
    from ...infrastructure.security.redaction import redact

    text = redact(text)
    text = _KEY_SHAPED.sub(r"\1-***", text)
    return _ASSIGNED.sub(r"\1***", text)


def root_error(exc: BaseException) -> BaseException:
    """The error a step failure wraps (nested workflows wrap once per level)."""
    seen = exc
    for _ in range(20):
        inner = getattr(seen, "error", None)
        if not isinstance(inner, BaseException):
            inner = seen.__cause__ if isinstance(seen, NanoBrainError) and not isinstance(
                seen, llm_errors.ProviderError
            ) else None
        if inner is None or inner is seen:
            break
        seen = inner
    return seen


def provider_status(error: llm_errors.ProviderError) -> int:
    if isinstance(error, llm_errors.ProviderTimeout):
        return 504
    if isinstance(error, llm_errors.RateLimited | llm_errors.ModelNotConfigured):
        return 503
    return 502


def busy_database(exc: BaseException) -> ApiProblem | None:
    """A 503 when the failure is the database being busy or out of reach: retrying helps, it is no bug."""
    from ...infrastructure.data.database import DatabaseError

    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            break
        if isinstance(seen, DatabaseError) or "database is locked" in str(seen):
            locked = "locked" in str(seen)
            reason = f"the database is busy ({seen})" if locked else f"the database is unavailable: {seen}"
            return ApiProblem(503, scrub(f"{reason}; retry shortly"), headers={"Retry-After": "1"})
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "error", None)
    return None


def problem_for_failure(exc: BaseException, *, what: str = "the run") -> ApiProblem:
    """The problem for a failed run or chat turn: provider failures 502/503/504, a busy database 503,
    the rest 500."""
    busy = busy_database(exc)
    if busy is not None:
        return busy
    cause = root_error(exc)
    if isinstance(cause, llm_errors.ProviderError):
        status = provider_status(cause)
        return ApiProblem(status, scrub(f"{what} failed: {cause}"), extra={"code": type(cause).__name__})
    if isinstance(cause, TimeoutError):
        return ApiProblem(504, scrub(f"{what} timed out: {cause}"), title="Timed out")
    return ApiProblem(500, scrub(f"{what} failed: {type(cause).__name__}: {cause}"), title="Run failed")


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        message = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            # FastAPI puts the character position where the field would be.
            at = f" at character {location[1]}" if len(location) > 1 else ""
            location, message = location[:1], f"not valid JSON{at} ({(error.get('ctx') or {}).get('error', message)})"
        errors.append({"field": ".".join(location), "message": message})
    return errors


# -- handlers --------------------------------------------------------------------------------------
def install(app: FastAPI) -> None:
    """Answer every error of `app` with a problem body."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "the request is not valid"
        # A body that is not JSON at all is a 400; a JSON body with wrong fields a 422.
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        return problem_response(request, ApiProblem(status, detail, errors=errors))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(request, ApiProblem(exc.status_code, detail, headers=exc.headers))

    async def on_nanobrain(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, problem_for_error(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        busy = busy_database(exc)
        if busy is not None:
            log.warning("%s %s: %s", request.method, request.url.path, busy.detail)
            return problem_response(request, busy)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            request, ApiProblem(500, "the server failed unexpectedly; the error is in its log")
        )

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(NanoBrainError, on_nanobrain)
    app.add_exception_handler(Exception, on_unexpected)


def problem_for_error(exc: BaseException) -> ApiProblem:
    """NanoBrain's own errors raised while serving a request, as problems."""
    from ...infrastructure.data.sessions import SessionExpired, SessionNotFound

    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, SessionNotFound):
        return ApiProblem(404, str(exc))
    if isinstance(exc, SessionExpired):
        return ApiProblem(410, str(exc))
    if isinstance(exc, UnitTypeError):
        return ApiProblem.field(422, f"inputs.{exc.unit}", str(exc))
    if isinstance(exc, ProblemsError):
        errors = [{"field": p.where, "message": p.message} for p in exc.problems]
        return ApiProblem(422, str(exc), errors=errors)
    if isinstance(exc, llm_errors.ProviderError):
        return problem_for_failure(exc, what="the model call")
    return problem_for_failure(exc, what="the request")
