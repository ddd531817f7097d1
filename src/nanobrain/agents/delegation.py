"""Delegation: which agent handles a request, by rules and by measured performance.

Rules are tried in order: a keyword, a regular expression, a skill (any healthy agent offering
it, the best performing first) or a condition (a function of the text). The first that matches
decides; otherwise the default. Each call's outcome (success, latency) is recorded per agent, and
among several agents that offer a skill the engine prefers the higher success rate, then the
lower latency. Every decision is reported as a `delegation` event of the running step: which
rule chose which agent, and why.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.context import current_context
from ..core.data_units import DataUnit
from ..core.errors import NanoBrainError
from ..core.steps import Step
from .registry import AgentEntry, AgentRegistry


class NoAgent(NanoBrainError):
    """No rule matched and there is no default agent."""


@dataclass(frozen=True)
class Rule:
    """One way to choose an agent. Build with `Rule.keyword/regex/skill/condition`."""

    name: str
    kind: str
    agent: str | None = None
    pattern: Any = None
    skill: str | None = None
    test: Callable[[str], bool] | None = None

    @classmethod
    def keyword(cls, agent: str, *words: str, name: str | None = None) -> Rule:
        lowered = tuple(w.lower() for w in words)
        return cls(name or f"keyword:{agent}", "keyword", agent, pattern=lowered)

    @classmethod
    def regex(cls, agent: str, pattern: str, *, name: str | None = None) -> Rule:
        return cls(name or f"regex:{agent}", "regex", agent, pattern=re.compile(pattern, re.IGNORECASE))

    @classmethod
    def skill_rule(cls, skill: str, *, when: str | None = None, name: str | None = None) -> Rule:
        """Any agent offering `skill`; only for texts matching `when` (a regex) if given."""
        pattern = re.compile(when, re.IGNORECASE) if when else None
        return cls(name or f"skill:{skill}", "skill", None, pattern=pattern, skill=skill)

    @classmethod
    def condition(cls, agent: str, test: Callable[[str], bool], *, name: str | None = None) -> Rule:
        return cls(name or f"condition:{agent}", "condition", agent, test=test)

    def matches(self, text: str) -> str | None:
        """Why the rule matches `text`, or None."""
        if self.kind == "keyword":
            words = set(re.findall(r"\w+", text.lower()))
            hit = next((w for w in self.pattern if w in words or (" " in w and w in text.lower())), None)
            return f"the text contains {hit!r}" if hit else None
        if self.kind in ("regex", "skill") and self.pattern is not None:
            found = self.pattern.search(text)
            if not found:
                return None
            return f"the text matches {self.pattern.pattern!r} ({found.group(0)!r})"
        if self.kind == "skill":
            return "every text"
        assert self.test is not None
        return "the condition holds" if self.test(text) else None


@dataclass
class AgentStats:
    """Recent outcomes of one agent (a bounded window)."""

    outcomes: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=100))

    def record(self, ok: bool, seconds: float) -> None:
        self.outcomes.append((ok, seconds))

    @property
    def calls(self) -> int:
        return len(self.outcomes)

    @property
    def success_rate(self) -> float:
        return sum(ok for ok, _ in self.outcomes) / len(self.outcomes) if self.outcomes else 1.0

    @property
    def latency(self) -> float:
        return statistics.median(s for _, s in self.outcomes) if self.outcomes else 0.0


@dataclass(frozen=True)
class Decision:
    agent: str
    rule: str
    reason: str


class DelegationEngine:
    """Chooses an agent for a text (see the module docstring); `delegate` also calls it."""

    def __init__(self, registry: AgentRegistry, rules: Sequence[Rule] = (), *, default: str | None = None) -> None:
        self.registry = registry
        self.rules = list(rules)
        self.default = default
        self.stats: dict[str, AgentStats] = {}
        for rule in self.rules:
            if rule.agent is not None and rule.agent not in registry:
                raise ValueError(f"rule {rule.name!r} names agent {rule.agent!r}, which is not registered")
        if default is not None and default not in registry:
            raise ValueError(f"the default agent {default!r} is not registered")

    def choose(self, text: str) -> Decision:
        for rule in self.rules:
            why = rule.matches(text)
            if why is None:
                continue
            if rule.kind == "skill":
                assert rule.skill is not None
                offering = self.registry.with_skill(rule.skill)
                if not offering:
                    continue
                best = min(offering, key=self._rank)
                stats = self.stats.get(best.name, AgentStats())
                return Decision(
                    best.name,
                    rule.name,
                    f"{why}; {len(offering)} healthy agent(s) offer {rule.skill!r}, {best.name!r} performs best "
                    f"(success {stats.success_rate:.0%} over {stats.calls} call(s), median {stats.latency:.3f}s)",
                )
            assert rule.agent is not None
            if not self.registry.get(rule.agent).healthy:
                continue
            return Decision(rule.agent, rule.name, why)
        if self.default is not None:
            return Decision(self.default, "default", "no rule matched")
        raise NoAgent(f"no delegation rule matched {text[:80]!r} and there is no default agent")

    def _rank(self, entry: AgentEntry) -> tuple[float, float, str]:
        stats = self.stats.get(entry.name, AgentStats())
        return (-stats.success_rate, stats.latency, entry.name)

    def record(self, agent: str, ok: bool, seconds: float) -> None:
        self.stats.setdefault(agent, AgentStats()).record(ok, seconds)

    async def delegate(self, text: str, **inputs: Any) -> Any:
        """Choose an agent, report the decision, call it with `text`, record how it went."""
        decision = self.choose(text)
        context = current_context()
        if context is not None:
            context.report("delegation", agent=decision.agent, rule=decision.rule, reason=decision.reason)
        entry = self.registry.get(decision.agent)
        started = time.perf_counter()
        try:
            result = await _call(entry, text, inputs)
        except Exception:
            self.record(decision.agent, False, time.perf_counter() - started)
            raise
        self.record(decision.agent, True, time.perf_counter() - started)
        return result


async def _call(entry: AgentEntry, text: str, inputs: Mapping[str, Any]) -> Any:
    target = entry.target
    if isinstance(target, Step):
        values = {"message": text, **inputs} if "message" in target.inputs else dict(inputs)
        outputs = await target.process(values)
        values_out = dict(outputs or {})
        return next(iter(values_out.values())) if len(values_out) == 1 else values_out
    result = await target.send(text if not inputs else {"message": text, **inputs})
    # A remote NanoBrain agent answers with its outputs by name: one output is the answer itself.
    return next(iter(result.values())) if isinstance(result, dict) and len(result) == 1 else result


class DelegateStep(Step):
    """A step that hands its `message` to the agent the engine chooses; output `reply`.

    With `discover`, each message first adds the live A2A agents of the registry's service
    registry (see `AgentRegistry.discover`), so skill rules can choose agents started since.
    """

    def __init__(self, name: str, engine: DelegationEngine, *, discover: bool = False, **options: Any) -> None:
        super().__init__(name, inputs={"message": DataUnit("message", str)}, outputs={"reply": None}, **options)
        self.engine = engine
        self.discover = discover

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        if self.discover:
            await self.engine.registry.discover()
        return {"reply": await self.engine.delegate(inputs["message"])}

    async def aclose(self) -> None:
        await self.engine.registry.aclose()


__all__ = ["AgentStats", "Decision", "DelegateStep", "DelegationEngine", "NoAgent", "Rule"]
