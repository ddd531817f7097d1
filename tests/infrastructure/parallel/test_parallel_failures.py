"""What counts as a failure: connection errors and timeouts fail over and count against a
processor's breaker; programming errors and auth or bad-request errors do neither."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from tests.infrastructure.parallel.parallel_helpers import drive

from nanobrain import FunctionStep, Step, StepError, VirtualClock, Workflow
from nanobrain.core.retry import RetryPolicy, is_retryable
from nanobrain.infrastructure.parallel import (
    BreakerPolicy,
    BreakerState,
    ParallelStep,
    ProcessorPool,
)
from nanobrain.llm import AuthError, BadRequest, RateLimited
from nanobrain.testing import SimulatedProcessor


class Raises(Step):
    """A plain step (no `retryable` attribute anywhere) that raises what it is given."""

    def __init__(self, name: str, error: Callable[[], BaseException]) -> None:
        super().__init__(name, inputs=["request"], outputs=["response"])
        self.error = error
        self.calls = 0

    async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        raise self.error()


class Model(BaseModel):
    n: int


def validation_error() -> ValidationError:
    try:
        Model.model_validate({"n": "many"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def wrapped_socket_error() -> Exception:
    """A client library's own error raised `from` the socket error (as httpx does)."""
    error = RuntimeError("all connection attempts failed")
    error.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    return error


FAILURES: list[Callable[[], BaseException]] = [
    lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    lambda: ConnectionResetError("reset by peer"),
    lambda: OSError(errno.ENETUNREACH, "Network is unreachable"),
    lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    lambda: TimeoutError("read timed out"),
    wrapped_socket_error,
    lambda: RateLimited("slow down"),
]
NOT_FAILURES: list[Callable[[], BaseException]] = [
    lambda: KeyError("missing"),
    lambda: TypeError("bad argument"),
    lambda: ValueError("bad value"),
    validation_error,
    lambda: FileNotFoundError(errno.ENOENT, "No such file"),
    lambda: AuthError("bad key"),
    lambda: BadRequest("too long"),
]


@pytest.mark.parametrize("make", FAILURES)
def test_connection_errors_and_timeouts_are_retryable(make: Callable[[], BaseException]) -> None:
    error = make()
    assert is_retryable(error)
    assert is_retryable(StepError("talk", error))  # judged by its cause inside a nested workflow


@pytest.mark.parametrize("make", NOT_FAILURES)
def test_programming_auth_and_bad_request_errors_are_not(make: Callable[[], BaseException]) -> None:
    assert not is_retryable(make())


async def test_a_plain_step_refusing_connections_fails_over_and_trips_its_breaker() -> None:
    clock = VirtualClock()
    refusing = Raises("p0", lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    retry = RetryPolicy(attempts=2, initial=0.0, jitter=0.0)
    pool = ProcessorPool(
        [refusing, SimulatedProcessor("p1", clock=clock)],
        clock=clock,
        balancer="round_robin",
        failover=retry,
        breaker=BreakerPolicy(min_calls=1, failure_rate=0.5),
    )
    task = asyncio.create_task(pool.call({"request": "x"}))
    await drive(clock, [task])
    assert task.result()["response"]["processor"] == "p1"  # failed over
    assert refusing.calls == 1
    breaker = pool["p0"].breaker
    assert breaker is not None and breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("make", [lambda: KeyError("missing"), lambda: TypeError("bad argument")])
async def test_a_plain_step_with_a_bug_neither_fails_over_nor_trips_its_breaker(
    make: Callable[[], BaseException],
) -> None:
    clock = VirtualClock()
    buggy = Raises("p0", make)
    pool = ProcessorPool(
        [buggy, SimulatedProcessor("p1", clock=clock)],
        clock=clock,
        balancer="round_robin",
        failover=RetryPolicy(attempts=2, initial=0.0, jitter=0.0),
        breaker=BreakerPolicy(min_calls=1, failure_rate=0.5),
    )
    with pytest.raises(type(make())):
        await pool.call({"request": "x"})
    assert buggy.calls == 1
    breaker = pool["p0"].breaker
    assert breaker is not None and breaker.state is BreakerState.CLOSED


async def test_a_function_step_refusing_connections_fails_over_and_trips_its_breaker_in_a_workflow() -> None:
    refused = 0

    def down(request: str) -> str:
        nonlocal refused
        refused += 1
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    def up(request: str) -> str:
        return f"up:{request}"

    fan = ParallelStep(
        "fan",
        [FunctionStep(down, "down"), FunctionStep(up, "up")],
        balancer="round_robin",
        breaker=BreakerPolicy(min_calls=2, failure_rate=0.5, cool_down=3600),
        failover=RetryPolicy(attempts=2, initial=0.0, jitter=0.0),
    )
    workflow = Workflow.sequence(fan, name="w")
    for i in range(4):
        assert await workflow.run(request=str(i)) == {"result": f"up:{i}"}
    assert refused == 2, "two refusals open the breaker; later requests skip the processor"
    breaker = fan.pool["down"].breaker
    assert breaker is not None and breaker.state is BreakerState.OPEN
