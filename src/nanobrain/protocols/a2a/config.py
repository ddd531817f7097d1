"""`kind: a2a_agent` in workflow documents, and `a2a_agents:` entries of an agent (remote agents as tools).

Pydantic only: a2a-sdk is imported when the step first calls its agent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...config.models import StepConfig
from ...config.registry import register_step_kind
from ...core.steps import Step
from ...infrastructure.parallel.breaker import BreakerPolicy

if TYPE_CHECKING:
    from ...config.loader import StepBuild


class RemoteAgentConfig(BaseModel):
    """A remote A2A agent: where it is and how to call it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="The agent's base URL (its card is at URL/.well-known/agent-card.json)"
    )
    service: str | None = Field(
        None, description="Instead of url: the name of an A2A agent in the service registry (a live one is used)"
    )
    registry: str | None = Field(
        None, description="The service registry's URL for `service` (default: NANOBRAIN_REGISTRY_URL)"
    )
    token: str | None = Field(None, description="Bearer token sent with each call (use ${ENV_VAR})")
    call_timeout: float = Field(120.0, gt=0, description="Seconds a call may take; then the remote task is cancelled")
    skill: str | None = Field(None, description="Refuse an agent whose card lacks this skill")
    breaker: BreakerPolicy | None = Field(None, description="A circuit breaker in front of the remote agent")
    name: str | None = Field(None, description="The tool's name (default: the card's name)")

    @model_validator(mode="after")
    def _url_or_service(self) -> RemoteAgentConfig:
        if (self.url is None) == (self.service is None):
            raise ValueError("give exactly one of url (where the agent is) or service (its registered name)")
        return self

    def remote_options(self) -> dict[str, Any]:
        """The keyword arguments of `RemoteAgent` (besides the url); ValueError names what is wrong."""
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        located: dict[str, Any] = {}
        if self.service is not None:
            from ...infrastructure.services.registry import REGISTRY_URL_ENV

            registry = self.registry or os.environ.get(REGISTRY_URL_ENV)
            if not registry:
                raise ValueError(
                    f"service {self.service!r} needs a service registry: set {REGISTRY_URL_ENV} "
                    "(redis://HOST:PORT/DB or postgresql://USER@HOST/DB) or give `registry:`"
                )
            located = {"service": self.service, "registry": registry}
        breaker = None
        if self.breaker is not None:
            from ...infrastructure.parallel.breaker import CircuitBreaker

            breaker = CircuitBreaker(f"a2a:{self.url or self.service}", self.breaker)
        return {"token": self.token, "timeout": self.call_timeout, "skill": self.skill, "breaker": breaker, **located}


class A2AAgentStepConfig(StepConfig, RemoteAgentConfig):
    """A remote A2A agent as a step: input `message` (or `inputs`), output `reply`."""

    kind: Literal["a2a_agent"] = "a2a_agent"
    inputs: list[str] | None = Field(None, description="Input names sent as a data part (default: message, as text)")


def build_a2a_agent(config: A2AAgentStepConfig, build: StepBuild) -> Step | None:
    from .client import A2AAgentStep

    try:
        remote = config.remote_options()
    except ValueError as exc:
        build.problem("url" if config.url is not None else "service", str(exc))
        return None
    inputs = {name: None for name in config.inputs} if config.inputs else None
    remote["call_timeout"] = remote.pop("timeout")
    return A2AAgentStep(build.name, config.url, inputs=inputs, **remote, **build.options(config))


register_step_kind("a2a_agent", A2AAgentStepConfig, build_a2a_agent)
