"""Workflows: list them with their schemas, start a run (wait, background, long-lived), stream one as SSE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ....core.errors import UnitTypeError
from ..auth import needs, protected_router
from ..problems import FAILURES, ApiProblem
from .run_routes import event_frames, wait_for

router = protected_router("workflows")

WorkflowName = Annotated[str, Path(min_length=1, max_length=200, description="A workflow's name (GET /v1/workflows)")]


class RunRequest(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="The workflow's inputs by name (its input_schema)")
    mode: Literal["wait", "background", "long_lived"] = Field(
        "wait",
        description="wait: answer with the result; background: answer 202 with the run id at once; "
        "long_lived: keep the run's triggers armed for more input (POST /v1/runs/{id}/input)",
    )
    durable: bool = Field(
        False,
        description="Journal the run: it may be given fewer inputs and wait for the rest "
        "(POST /v1/runs/{id}/input), even across a restart of the server",
    )


class StreamRequest(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="The workflow's inputs by name")


def _state(request: Request) -> Any:
    return request.app.state.nanobrain


def _workflow(request: Request, name: str) -> Any:
    workflow = _state(request).workflows.get(name)
    if workflow is None:
        known = ", ".join(sorted(_state(request).workflows)) or "none"
        raise ApiProblem.field(404, "name", f"no workflow {name!r} (served: {known})")
    return workflow


def describe(workflow: Any) -> dict[str, Any]:
    from ....core.schemas import input_schema, output_schema

    return {
        "name": workflow.name,
        "description": workflow.description,
        "input_schema": input_schema(workflow),
        "output_schema": output_schema(workflow),
    }


def check_inputs(workflow: Any, inputs: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The inputs checked against the workflow's declared ones: every mistake named (`inputs.NAME`)."""
    errors = []
    declared = workflow.inputs
    for name in inputs:
        if name not in declared:
            known = ", ".join(declared) or "none"
            errors.append({"field": f"inputs.{name}", "message": f"no such input (inputs: {known})"})
    if not partial:
        for name in workflow.required_inputs:
            if name not in inputs and not declared[name].awaits_set:
                errors.append({"field": f"inputs.{name}", "message": "required"})
    checked: dict[str, Any] = {}
    for name, value in inputs.items():
        if name in declared:
            try:
                checked[name] = declared[name]._check(value)
            except UnitTypeError as exc:
                errors.append({"field": f"inputs.{name}", "message": str(exc)})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ApiProblem(422, detail, errors=errors)
    # The values as sent: the run validates (and converts) them again when it sets its units.
    return dict(inputs)


@router.get("/v1/workflows", summary="The served workflows with their input and output JSON Schemas", **needs("read"))
async def list_workflows(request: Request) -> dict[str, Any]:
    return {"workflows": [describe(w) for w in _state(request).workflows.values()]}


@router.get("/v1/workflows/{name}", summary="One workflow with its schemas", **needs("read"))
async def get_workflow(request: Request, name: WorkflowName) -> dict[str, Any]:
    return describe(_workflow(request, name))


@router.get(
    "/v1/workflows/{name}/graph",
    summary="A workflow's graph: inputs, steps and outputs as nodes, links as edges (what the UI draws)",
    **needs("read"),
)
async def get_workflow_graph(request: Request, name: WorkflowName) -> dict[str, Any]:
    from ..graph import graph_json

    return graph_json(_workflow(request, name))


@router.post(
    "/v1/workflows/{name}/runs",
    summary="Start a run: wait for its result, or get its id at once (background, long-lived)",
    status_code=200,
    responses={
        201: {"description": "A long-lived run started"},
        202: {"description": "A background run started; follow `Location`"},
        **FAILURES,
    },
    **needs("run"),
)
async def start_run(request: Request, name: WorkflowName, body: RunRequest) -> Any:
    state = _state(request)
    workflow = _workflow(request, name)
    principal = request.state.principal
    if body.mode == "long_lived":
        if body.durable:
            why = "a long-lived run cannot be durable: use mode wait or background"
            raise ApiProblem.field(422, "body.durable", why)
        inputs = check_inputs(workflow, body.inputs, partial=True)
        run = await state.runs.start_long_lived(workflow, inputs, owner=principal.name)
        state.audit.record(principal, "start", f"run:{run.id}", workflow=name, mode=body.mode)
        return JSONResponse(run.view(), status_code=201, headers={"Location": f"/v1/runs/{run.id}"})
    inputs = check_inputs(workflow, body.inputs, partial=body.durable)
    run = state.runs.start(workflow, inputs, mode=body.mode, owner=principal.name, durable=body.durable)
    state.audit.record(principal, "start", f"run:{run.id}", workflow=name, mode=body.mode, durable=body.durable)
    if body.mode == "background":
        return JSONResponse(run.view(), status_code=202, headers={"Location": f"/v1/runs/{run.id}"})
    await wait_for(request, run)
    if run.problem is not None:
        problem = run.problem
        raise ApiProblem(problem.status, problem.detail, title=problem.title, extra={"run_id": run.id, **problem.extra})
    return run.view()


@router.post(
    "/v1/workflows/{name}/stream",
    summary="Start a run and stream its events as Server-Sent Events; disconnecting cancels the run",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The run's events"},
        503: FAILURES[503],
    },
    **needs("run"),
)
async def stream_run(request: Request, name: WorkflowName, body: StreamRequest) -> Any:
    state = _state(request)
    workflow = _workflow(request, name)
    inputs = check_inputs(workflow, body.inputs)
    principal = request.state.principal
    run = state.runs.start(workflow, inputs, mode="stream", owner=principal.name)
    state.audit.record(principal, "start", f"run:{run.id}", workflow=name, mode="stream")
    return event_frames(state, run, after=0, cancel_on_close=True)

