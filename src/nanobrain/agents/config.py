"""`kind: agent` in workflow documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config.models import StepConfig
from ..config.registry import register_step_kind
from ..core.steps import Step
from ..protocols.a2a.config import RemoteAgentConfig
from ..protocols.mcp.config import MCPServerConfig

if TYPE_CHECKING:
    from ..config.loader import StepBuild


class AgentStepConfig(StepConfig):
    """A language-model step with tools."""

    kind: Literal["agent"] = "agent"
    model: str | None = Field(None, description="local, openai:MODEL, anthropic:MODEL, ... (default: NANOBRAIN_MODEL)")
    system: str = ""
    prompt: str = Field("{message}", description="Template; its {fields} become the step's inputs")
    tools: list[str] = Field(default_factory=list, description="package.module:function (or a step) for each tool")
    mcp_servers: list[MCPServerConfig] = Field(
        default_factory=list, description="MCP servers whose tools the agent may call (a command or a url each)"
    )
    a2a_agents: list[RemoteAgentConfig] = Field(
        default_factory=list, description="Remote A2A agents the agent may call, each as one tool"
    )
    max_rounds: int = Field(8, ge=1)
    output_type: str | None = Field(None, description="package.module:PydanticModel the answer must match")
    max_reasks: int = Field(2, ge=0)
    memory: bool = True
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    tool_choice: str = Field(
        "auto",
        description="auto (the model decides), required (call a tool before answering), none, or a tool's name",
    )


def build_agent(config: AgentStepConfig, build: StepBuild) -> Step | None:
    from pydantic import BaseModel

    from .agent import Agent

    tools: list[Any] = []
    for i, reference in enumerate(config.tools):
        target = build.callable(reference, f"tools[{i}]", "a tool function or step")
        if target is not None:
            tools.append(target)
    if config.mcp_servers:
        from ..protocols.mcp.client import MCPToolset

        # Connected on the agent's first turn and closed with the workflow (Agent.aclose).
        tools.extend(MCPToolset.from_config(server) for server in config.mcp_servers)
    for i, remote in enumerate(config.a2a_agents):
        from ..protocols.a2a.client import RemoteAgent

        try:
            tools.append(RemoteAgent(remote.url, name=remote.name, **remote.remote_options()))
        except ValueError as exc:
            build.problem(f"a2a_agents[{i}].{'url' if remote.url is not None else 'service'}", str(exc))
    output_type: type[BaseModel] | None = None
    if config.output_type:
        target = build.callable(config.output_type, "output_type", "a pydantic model class")
        if target is None:
            return None
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            build.problem("output_type", f"{config.output_type!r} is not a pydantic model class")
            return None
        output_type = target
    if config.model is not None:
        # Resolve now so that a bad model string is a config error, not a failure mid-run.
        from ..llm.selection import resolve_model

        try:
            model: Any = resolve_model(config.model)
        except Exception as exc:
            build.problem("model", str(exc))
            return None
    else:
        model = None
    try:
        return Agent(
            build.name,
            model=model,
            system=config.system,
            prompt=config.prompt,
            tools=tools,
            max_rounds=config.max_rounds,
            output_type=output_type,
            max_reasks=config.max_reasks,
            memory=config.memory,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            tool_choice=config.tool_choice,
            **build.options(config),
        )
    except ValueError as exc:
        if "tool_choice" not in str(exc):
            raise
        build.problem("tool_choice", str(exc))
        return None


register_step_kind("agent", AgentStepConfig, build_agent)
