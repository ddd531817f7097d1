"""Runs: list, state and result, their events as SSE (resumable with Last-Event-ID), input, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query, Request
from pydantic import BaseModel, Field

from ..auth import needs, protected_router
from ..disconnect import ClientDisconnected, unless_disconnected
from ..problems import FAILURES, PROBLEM_JSON, ApiProblem
from ..run_bus import RemoteRun
from ..runs import HEARTBEAT, ServerRun, encode
from ..sse import COMMENT_HEARTBEAT, EventStreamResponse, frame

router = protected_router("runs")

RunId = Annotated[str, Path(min_length=1, max_length=64, description="The run's id")]


class InputRequest(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="Inputs to set on the waiting run")
    fire: list[str] = Field(default_factory=list, description="Steps to fire now (manual triggers)")
    wait: bool = Field(False, description="Answer once the run is idle again, with its outputs")


def _state(request: Request) -> Any:
    return request.app.state.nanobrain


async def wait_for(request: Request, run: ServerRun) -> None:
    """Wait until the run ends (or waits for input); a client that goes away cancels it."""
    # The run's own task when it has one (one task fewer per request than waiting on `done`).
    waiting = run.task if run.task is not None and not run.task.done() else asyncio.ensure_future(run.done.wait())
    try:
        await unless_disconnected(request, waiting)
    except (ClientDisconnected, asyncio.CancelledError):
        await run.cancel()
        raise


def event_frames(
    state: Any, run: ServerRun | RemoteRun, *, after: int, cancel_on_close: bool
) -> EventStreamResponse:
    """The run's events as SSE: `id` is the event number, `event` its type; `end` closes the stream.

    A run of another replica streams from Redis, with the same numbers.
    """
    heartbeat = state.config.heartbeat_seconds

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield frame(encode({"run_id": run.id, "first_kept": run.first_kept}), event="stream_started")
            async for seq, kind, data in run.records(after, heartbeat=heartbeat):
                if seq == HEARTBEAT[0]:
                    yield COMMENT_HEARTBEAT
                else:
                    yield frame(data, event=kind, id=seq)
            view = await run.refresh() if isinstance(run, RemoteRun) else run.view()
            yield frame(encode(view), event="end")
        finally:
            if cancel_on_close and isinstance(run, ServerRun) and not run.done.is_set():
                await run.cancel()  # the client went away from a run it was the only reader of

    return EventStreamResponse(frames(), headers={"X-Run-Id": run.id})


RunStatus = Literal["running", "waiting", "succeeded", "failed", "cancelled", "interrupted"]


@router.get("/v1/runs", summary="Runs the server knows (the newest `limit`), oldest first", **needs("read"))
async def list_runs(
    request: Request,
    status: Annotated[RunStatus | None, Query(description="Only runs in this state")] = None,
    workflow: Annotated[str | None, Query(max_length=200, description="Only runs of this workflow")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"runs": await _state(request).runs.views(limit=limit, status=status, workflow=workflow)}


@router.get("/v1/runs/{run_id}", summary="A run's state and, once finished, its result", **needs("read"))
async def get_run(request: Request, run_id: RunId) -> dict[str, Any]:
    state = _state(request)
    run = await state.runs.find(run_id, state.workflows)
    state.audit.record(request.state.principal, "read", f"run:{run_id}")
    return run.view()


@router.get(
    "/v1/runs/{run_id}/events",
    summary="A run's events as Server-Sent Events, from the start or after Last-Event-ID",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The run's events"},
        410: {"description": "The events after Last-Event-ID are no longer kept", "content": {PROBLEM_JSON: {}}},
    },
    **needs("read"),
)
async def run_events(
    request: Request,
    run_id: RunId,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Any:
    state = _state(request)
    run = await state.runs.find(run_id, state.workflows)
    after = 0
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise ApiProblem.field(400, "Last-Event-ID", f"expected an event number, got {last_event_id!r}")
        after = int(last_event_id)
        if after + 1 < run.first_kept:
            raise ApiProblem.field(
                410, "Last-Event-ID", f"events up to {run.first_kept - 1} are no longer kept; read the run's state"
            )
    state.audit.record(request.state.principal, "read", f"run:{run_id}", what="events", after=after)
    return event_frames(state, run, after=after, cancel_on_close=False)


@router.post(
    "/v1/runs/{run_id}/input",
    summary="Send input to a waiting run (long-lived, or durable and waiting), or fire its manual steps",
    responses={
        409: {"description": "The run takes no input (not waiting, or has ended)", "content": {PROBLEM_JSON: {}}},
        **FAILURES,
    },
    **needs("run"),
)
async def send_input(request: Request, run_id: RunId, body: InputRequest) -> dict[str, Any]:
    from .workflow_routes import check_inputs

    state = _state(request)
    found = await state.runs.find(run_id, state.workflows)
    if isinstance(found, RemoteRun):
        owner = found.view().get("replica", "another replica")
        why = f"run {run_id!r} is {found.state} on replica {owner}: send it input there"
        raise ApiProblem.field(409, "run_id", why)
    run = found
    inputs = check_inputs(run.workflow, body.inputs, partial=True)
    for index, name in enumerate(body.fire):
        if name not in run.workflow.steps:
            raise ApiProblem.field(422, f"fire.{index}", f"no step {name!r} in workflow {run.workflow.name!r}")
    if run.handle is None:
        if run.journal is None:
            why = f"run {run_id!r} is neither long-lived nor durable: it takes no input"
            raise ApiProblem.field(409, "run_id", why)
        if not run.done.is_set() or run.status not in ("waiting", "interrupted"):
            raise ApiProblem.field(409, "run_id", f"run {run_id!r} is {run.state}: only a waiting run takes input")
        state.audit.record(request.state.principal, "input", f"run:{run_id}", inputs=sorted(inputs), fire=body.fire)
        state.runs.resume(run, inputs, list(body.fire))
        if body.wait:
            await wait_for(request, run)
        return run.view()
    if run.done.is_set():
        raise ApiProblem.field(409, "run_id", f"run {run_id!r} has ended ({run.status})")
    state.audit.record(request.state.principal, "input", f"run:{run_id}", inputs=sorted(inputs), fire=body.fire)
    try:
        if inputs:
            await run.handle.send(**inputs)
        for name in body.fire:
            run.handle.fire(name)
        if body.wait:
            await run.handle.idle()
    except Exception as exc:
        run.finish("failed", error=exc)
        raise run.problem or exc from None
    return run.view()


@router.post("/v1/runs/{run_id}/cancel", summary="Cancel a run (a finished run stays as it was)", **needs("run"))
async def cancel_run(request: Request, run_id: RunId) -> dict[str, Any]:
    state = _state(request)
    run = await state.runs.find(run_id, state.workflows)
    state.audit.record(request.state.principal, "cancel", f"run:{run_id}")
    await run.cancel()  # a run of another replica: asked through Redis, answered once it ended
    return run.view()
