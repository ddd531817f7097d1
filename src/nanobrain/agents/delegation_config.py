"""`kind: delegate` in workflow documents: a step that hands its `message` to the agent its rules choose."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config.models import StepConfig
from ..config.registry import register_step_kind
from ..core.errors import NanoBrainError
from ..core.steps import Step
from ..protocols.a2a.config import RemoteAgentConfig

if TYPE_CHECKING:
    from ..config.loader import StepBuild


class LocalAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(description="package.module:attribute of a step, agent or workflow")
    skills: list[str] = Field(default_factory=list)


class RuleConfig(BaseModel):
    """One rule: `agent` with `keywords`, `regex` or `condition`; or a `skill` (optionally `when` a regex)."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = None
    keywords: list[str] | None = None
    regex: str | None = None
    condition: str | None = Field(None, description="package.module:function(text) -> bool")
    skill: str | None = None
    when: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RuleConfig:
        kinds = [k for k in ("keywords", "regex", "condition", "skill") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of keywords, regex, condition or skill")
        if (self.skill is None) == (self.agent is None):
            raise ValueError("a skill rule names no agent; every other rule names one")
        return self


class DelegateStepConfig(StepConfig):
    """Choose an agent for each message by rules and measured performance, and ask it."""

    kind: Literal["delegate"] = "delegate"
    agents: dict[str, RemoteAgentConfig | LocalAgentConfig] = Field(
        default_factory=dict, description="Agents by name: a url, a registered service or a step"
    )
    rules: list[RuleConfig] = Field(default_factory=list)
    default: str | None = None
    discover: bool = Field(
        False,
        description="Also use every live A2A agent of the service registry (skill rules match the skills "
        "they registered)",
    )
    registry: str | None = Field(
        None, description="The service registry's URL for `discover` (default: NANOBRAIN_REGISTRY_URL)"
    )


def build_delegate(config: DelegateStepConfig, build: StepBuild) -> Step | None:
    import re

    from .delegation import DelegateStep, DelegationEngine, Rule
    from .registry import AgentRegistry

    if not config.agents and not config.discover:
        build.problem("agents", "name at least one agent, or discover the registered ones with `discover: true`")
        return None
    services = None
    if config.discover:
        import os

        from ..infrastructure.services.registry import REGISTRY_URL_ENV

        services = config.registry or os.environ.get(REGISTRY_URL_ENV)
        if not services:
            build.problem("discover", f"discovering agents needs a service registry: set {REGISTRY_URL_ENV} "
                          "(redis://HOST:PORT/DB or postgresql://USER@HOST/DB) or give `registry:`")  # fmt: skip
            return None
    try:
        registry = AgentRegistry(services=services)
    except NanoBrainError as exc:  # a registry URL that names no backend
        build.problem("registry", str(exc))
        return None
    for name, agent in config.agents.items():
        if isinstance(agent, LocalAgentConfig):
            target = build.callable(agent.step, f"agents.{name}.step", "a step, agent or workflow")
            if target is None:
                continue
            if not isinstance(target, Step):
                build.problem(f"agents.{name}.step", f"{agent.step!r} is not a step")
                continue
            registry.add(name, target, skills=agent.skills)
        else:
            from ..protocols.a2a.client import RemoteAgent

            try:
                registry.add(name, RemoteAgent(agent.url, name=name, **agent.remote_options()))
            except ValueError as exc:
                build.problem(f"agents.{name}.{'url' if agent.url is not None else 'service'}", str(exc))
    rules: list[Rule] = []
    for i, rule in enumerate(config.rules):
        where = f"rules[{i}]"
        if rule.agent is not None and rule.agent not in config.agents:
            build.problem(f"{where}.agent", f"no agent named {rule.agent!r} (agents: {', '.join(config.agents)})")
            continue
        try:
            if rule.keywords is not None:
                rules.append(Rule.keyword(rule.agent or "", *rule.keywords))
            elif rule.regex is not None:
                rules.append(Rule.regex(rule.agent or "", rule.regex))
            elif rule.skill is not None:
                rules.append(Rule.skill_rule(rule.skill, when=rule.when))
            else:
                test: Any = build.callable(rule.condition or "", f"{where}.condition", "a function of the text")
                if test is not None:
                    rules.append(Rule.condition(rule.agent or "", test))
        except re.error as exc:
            build.problem(f"{where}.regex" if rule.regex else f"{where}.when", f"not a regular expression: {exc}")
    if config.default is not None and config.default not in config.agents:
        build.problem("default", f"no agent named {config.default!r} (agents: {', '.join(config.agents)})")
        return None
    try:
        engine = DelegationEngine(registry, rules, default=config.default)
    except ValueError as exc:  # an agent that could not be built is already reported
        if not build.ctx.problems:
            build.problem("agents", str(exc))
        return None
    return DelegateStep(build.name, engine, discover=config.discover, **build.options(config))


register_step_kind("delegate", DelegateStepConfig, build_delegate)
