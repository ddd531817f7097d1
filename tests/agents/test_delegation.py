"""The agent registry and the delegation engine: rules, performance-based choice, decisions as
events, remote A2A agents registered from their cards."""

from __future__ import annotations

from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.agents.delegation import DelegateStep, DelegationEngine, NoAgent, Rule
from nanobrain.agents.registry import AgentRegistry, UnknownAgent
from nanobrain.config import load_workflow


@nb.step
def weather(message: str) -> str:
    return f"sunny ({message})"


@nb.step
def jokes(message: str) -> str:
    return "a joke"


@nb.step
def flaky_math(message: str) -> str:
    raise RuntimeError("calculator broke")


@nb.step
def steady_math(message: str) -> str:
    return "42"


def registry() -> AgentRegistry:
    agents = AgentRegistry()
    agents.add("weather", weather, skills=["forecast"])
    agents.add("jokes", jokes)
    agents.add("flaky", flaky_math, skills=["math"])
    agents.add("steady", steady_math, skills=["math"])
    return agents


def test_rules_are_tried_in_order_and_say_why() -> None:
    engine = DelegationEngine(
        registry(),
        [
            Rule.keyword("weather", "rain", "forecast"),
            Rule.regex("jokes", r"\bfunny\b|\bjoke"),
            Rule.condition("steady", lambda text: text.strip().endswith("?") and "sum" in text),
        ],
        default="jokes",
    )
    decision = engine.choose("Will it RAIN tomorrow?")
    assert (decision.agent, decision.rule) == ("weather", "keyword:weather")
    assert decision.reason == "the text contains 'rain'"
    assert engine.choose("tell me a joke").rule == "regex:jokes"
    assert engine.choose("what is the sum?").agent == "steady"
    assert engine.choose("hello") == engine.choose("hello")
    assert engine.choose("hello").rule == "default"
    with pytest.raises(NoAgent, match="no delegation rule matched 'hello'"):
        DelegationEngine(registry(), [Rule.keyword("weather", "rain")]).choose("hello")
    with pytest.raises(ValueError, match="names agent 'nobody'"):
        DelegationEngine(registry(), [Rule.keyword("nobody", "x")])
    with pytest.raises(UnknownAgent, match="no agent named 'nobody'"):
        registry().get("nobody")


async def test_skill_rules_prefer_the_agent_that_performs_best() -> None:
    engine = DelegationEngine(registry(), [Rule.skill_rule("math", when=r"\d")])
    # Untried agents tie; the name breaks the tie, so 'flaky' goes first and fails.
    assert engine.choose("2+2").agent == "flaky"
    with pytest.raises(RuntimeError, match="calculator broke"):
        await engine.delegate("2+2")
    decision = engine.choose("3+3")
    assert decision.agent == "steady"
    assert "'steady' performs best" in decision.reason and "2 healthy agent(s) offer 'math'" in decision.reason
    assert await engine.delegate("3+3") == "42"
    assert engine.stats["flaky"].success_rate == 0.0 and engine.stats["steady"].success_rate == 1.0


async def test_every_decision_is_an_event_of_the_run() -> None:
    engine = DelegationEngine(registry(), [Rule.keyword("weather", "rain")], default="jokes")
    workflow = nb.Workflow.sequence(DelegateStep("router", engine), name="desk")
    events = [e async for e in workflow.stream(message="rain later?")]
    (decision,) = [e for e in events if isinstance(e, nb.Custom) and e.name == "delegation"]
    assert decision.step == "router"
    assert decision.data == {"agent": "weather", "rule": "keyword:weather", "reason": "the text contains 'rain'"}
    (finished,) = [e for e in events if isinstance(e, nb.RunFinished)]
    assert finished.outputs == {"reply": "sunny (rain later?)"}


async def test_remote_a2a_agents_are_registered_from_their_cards_with_health() -> None:
    pytest.importorskip("a2a")
    from tests.protocols import a2a_peer
    from tests.protocols.conftest import free_port, served

    from nanobrain.protocols.a2a import a2a_app

    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base, tags=["loud"])) as base:
        agents = AgentRegistry(timeout=5)
        agents.add_remote("shouter", base)
        agents.add_remote("gone", f"http://127.0.0.1:{free_port()}", connect_timeout=1)
        assert await agents.check() == {"shouter": True, "gone": False}
        entry = agents.get("shouter")
        assert entry.skills == {"shout", "loud"} and entry.description == "Shout a text back, word by word"
        assert "could not be fetched" in agents.get("gone").problem
        engine = DelegationEngine(agents, [Rule.skill_rule("loud")])
        assert await engine.delegate("quiet please") == "QUIET PLEASE!"
        for entry in agents.entries():
            await entry.target.aclose()


DESK = """\
name: desk
inputs: {message: str}
outputs: {reply: str}
steps:
  router:
    kind: delegate
    agents:
      weather: {step: "tests.agents.test_delegation:weather", skills: [forecast]}
      jokes: {step: "tests.agents.test_delegation:jokes"}
    rules:
      - {agent: weather, keywords: [rain, sun]}
      - {skill: forecast, when: "tomorrow"}
    default: jokes
links:
  - {from: inputs.message, to: router.message}
  - {from: router.reply, to: outputs.reply}
"""


async def test_delegate_step_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    workflow = load_workflow(path)
    assert await workflow.run(message="any rain?") == {"reply": "sunny (any rain?)"}
    assert await workflow.run(message="and tomorrow?") == {"reply": "sunny (and tomorrow?)"}
    assert await workflow.run(message="hello") == {"reply": "a joke"}


def test_bad_delegate_config_names_the_place(tmp_path: Path) -> None:
    path = tmp_path / "desk.yaml"
    path.write_text(
        DESK.replace("agent: weather, keywords", "agent: nobody, keywords").replace('when: "tomorrow"', 'when: "("')
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    text = str(caught.value)
    assert "steps.router.rules[0].agent: no agent named 'nobody'" in text
    assert "steps.router.rules[1].when: not a regular expression" in text
