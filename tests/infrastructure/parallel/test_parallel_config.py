"""`kind: parallel` (and the agent kinds) in YAML build the same objects as the constructors; bad
declarations are reported with the path inside the document and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nanobrain as nb
from nanobrain.config import load_workflow
from nanobrain.config.schema import json_schema
from nanobrain.infrastructure.parallel import (
    BreakerPolicy,
    ParallelConversationalAgentStep,
    ParallelStep,
    PowerOfTwoChoices,
    Weighted,
)
from nanobrain.llm import ScriptedModel

HELPERS = "tests.infrastructure.parallel.parallel_helpers"

FULL = f"""
name: shouting
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  shout:
    kind: parallel
    balancer: {{kind: weighted, weights: {{a: 3, b: 1}}}}
    breaker: {{min_calls: 2, cool_down: 5, consecutive_failures: 3}}
    failover: {{attempts: 4, initial: 0.0, jitter: 0.0, retry_if: "{HELPERS}:is_flaky"}}
    rate_limit: {{requests_per_second: 100, tokens_per_minute: 10000}}
    pool_rate_limit: {{requests_per_second: 500}}
    pool_concurrency: 4
    processor_concurrency: 2
    queue_size: 10
    deadline: 5
    attempt_timeout: 2
    health: {{interval: 30, unhealthy_after: 3, probe: "{HELPERS}:always_healthy"}}
    autoscale: {{min_size: 2, max_size: 3, factory: "{HELPERS}:make_shouter"}}
    processors:
      a: {{function: "{HELPERS}:shout", weight: 3}}
      b: {{step: "{HELPERS}:SHOUTER"}}
      c: {{function: "{HELPERS}:shout", concurrency: 5}}
links:
  - {{from: inputs.text, to: shout.text}}
  - {{from: shout.result, to: outputs.result}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(text)
    return path


async def test_a_full_declaration_loads_into_the_same_objects_and_runs(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, FULL))
    step = workflow.steps["shout"]
    assert isinstance(step, ParallelStep)
    pool = step.pool
    assert [(p.name, p.weight, p.concurrency) for p in pool.processors] == [("a", 3.0, 2), ("b", 1.0, 2), ("c", 1.0, 5)]
    assert isinstance(pool.balancer, Weighted) and pool.balancer.weights == {"a": 3, "b": 1}
    assert pool.breaker == BreakerPolicy(min_calls=2, cool_down=5, consecutive_failures=3)
    assert pool.failover is not None and pool.failover.attempts == 4
    assert pool.failover.retry_if is not None and pool.failover.retry_if(KeyError()) is True
    assert pool.concurrency == 4 and pool.queue.maxsize == 10
    assert pool.deadline == 5 and pool.attempt_timeout == 2
    assert pool["a"].request_bucket is not None and pool["a"].token_bucket is not None
    assert step.health_checker is not None and step.health_checker.policy.unhealthy_after == 3
    assert step.autoscaler is not None and step.autoscaler.policy.max_size == 3
    assert step.concurrency == 1024
    try:
        results = [await workflow.run(text=word) for word in ("hi", "there")]
        assert results == [{"result": "HI!"}, {"result": "THERE!"}]
    finally:
        await step.aclose()


async def test_conversational_agents_from_yaml_share_memory_and_stick(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: talk
inputs: {message: str, session: str}
outputs: {reply: str}
steps:
  talk:
    kind: parallel_conversational_agent
    balancer: {kind: power_of_two, seed: 4}
    processors:
      one: {kind: agent, system: Be brief.}
      two: {kind: agent, system: Be brief.}
links:
  - {from: inputs.message, to: talk.message}
  - {from: inputs.session, to: talk.session}
  - {from: talk.reply, to: outputs.reply}
""",
    )
    workflow = load_workflow(path)
    step = workflow.steps["talk"]
    assert isinstance(step, ParallelConversationalAgentStep) and step.pool.sticky
    assert isinstance(step.pool.balancer, PowerOfTwoChoices) and step.pool.balancer.seed == 4
    agents = [p.step for p in step.pool.processors]
    assert agents[0].memory is agents[1].memory is step.memory  # type: ignore[attr-defined]
    for agent in agents:
        agent.model = ScriptedModel(respond=lambda r, name=agent.name: f"{name}:{len(r.messages)}")  # type: ignore[attr-defined, misc]
    first = await workflow.run(message="hi", session="s")
    second = await workflow.run(message="again", session="s")
    assert first["reply"].split(":")[0] == second["reply"].split(":")[0]  # the same agent
    assert second["reply"].endswith(":4")  # system, the first turn (2 messages), the new one


async def test_a_custom_balancer_class_by_reference(tmp_path: Path) -> None:
    text = FULL.replace("{kind: weighted, weights: {a: 3, b: 1}}", f"{HELPERS}:BackwardsRobin")
    step = load_workflow(write(tmp_path, text)).steps["shout"]
    assert type(step.pool.balancer).__name__ == "BackwardsRobin"  # type: ignore[attr-defined]


def check_reported(text: str, expected: list[tuple[str, str]]) -> None:
    for where, line in expected:
        matching = [row for row in text.splitlines() if f": {where}:" in row]
        assert matching, f"{where} not reported in:\n{text}"
        assert line in matching[0], matching[0]


def test_invalid_options_are_reported_with_their_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """name: broken
inputs: {text: str}
outputs: {result: str}
steps:
  fan:
    kind: parallel
    breaker: {failure_rate: 2}
    failover: {attempts: 0}
    deadline: -1
    processors: {}
""",
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    text = str(caught.value)
    check_reported(
        text,
        [
            ("steps.fan.breaker.failure_rate", ":7:"),
            ("steps.fan.failover.attempts", ":8:"),
            ("steps.fan.deadline", ":9:"),
            ("steps.fan.processors", ":10:"),
        ],
    )


def test_bad_processors_and_balancers_are_reported_with_their_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""name: broken
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  fan:
    kind: parallel
    balancer: fastest
    autoscale: {{min_size: 4, max_size: 2}}
    processors:
      a: {{kind: nope}}
      b: {{function: "{HELPERS}:shout", weight: -1}}
      c: {{step: "{HELPERS}:missing"}}
      d: {{step: "{HELPERS}:SHOUTER", timeout: 3}}
      e: {{function: "{HELPERS}:shout", retries: 2}}
  agents:
    kind: parallel_agent
    balancer: {{kind: "{HELPERS}:is_flaky"}}
    processors:
      f: {{function: "{HELPERS}:shout"}}
""",
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    text = str(caught.value)
    check_reported(
        text,
        [
            ("steps.fan.balancer", ":7:"),
            ("steps.fan.autoscale", ":8:"),
            ("steps.fan.processors.a.kind", ":10:"),
            ("steps.fan.processors.b.weight", ":11:"),
            ("steps.fan.processors.c.step", ":12:"),
            ("steps.fan.processors.d.timeout", ":13:"),
            ("steps.fan.processors.e.retries", ":14:"),
            ("steps.agents.balancer", ":17:"),
            ("steps.agents.processors.f", ":19:"),
        ],
    )
    for message in (
        "unknown balancer 'fastest'",
        "min_size must not be larger than max_size",
        "unknown step kind 'nope'",
        "weight must be a positive number",
        "no attribute 'missing'",
        "takes only `step` and `weight`",
        "unknown field",
        "is not a Balancer subclass",
        "is not an agent",
    ):
        assert message in text, message


def test_the_json_schema_knows_the_parallel_kinds() -> None:
    schema = json_schema()
    names = set(schema["$defs"])
    assert {"ParallelStepConfig", "ParallelAgentStepConfig", "ParallelConversationalAgentStepConfig"} <= names
    assert "failover" in schema["$defs"]["ParallelStepConfig"]["properties"]


def test_inline_processors_are_built_by_the_loaders_own_step_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanobrain.config import loader

    built: list[tuple[str, tuple[str | int, ...] | None]] = []
    original = loader.build_step

    def spy(name: str, raw: Any, ctx: Any, location: Any = None) -> Any:
        built.append((name, location))
        return original(name, raw, ctx, location)

    monkeypatch.setattr(loader, "build_step", spy)
    step = load_workflow(write(tmp_path, FULL)).steps["shout"]
    assert isinstance(step, ParallelStep) and [p.name for p in step.pool.processors] == ["a", "b", "c"]
    # The workflow's step, then its inline processors (`b` is a reference), each at its own path.
    assert built == [
        ("shout", None),
        ("a", ("steps", "shout", "processors", "a")),
        ("c", ("steps", "shout", "processors", "c")),
    ]
