"""The agent card of a workflow served over A2A (protocol 1.0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from a2a.types import AgentCard

    from ...core.steps import Step

SCHEMAS_EXTENSION = "urn:nanobrain:a2a:schemas:v1"
"""A card extension whose params carry the workflow's input and output JSON Schemas."""

PROTOCOL_VERSION = "1.0"


def agent_card(
    step: Step,
    url: str,
    *,
    version: str = "",
    skills: Sequence[dict[str, Any]] = (),
    tags: Sequence[str] = (),
    examples: Sequence[str] = (),
    bearer_auth: bool = False,
) -> AgentCard:
    """A card from the workflow's name, description and input/output schemas.

    `url` is the JSON-RPC endpoint clients post to. Without `skills`, the workflow is one skill.
    With `bearer_auth`, the card advertises an HTTP bearer scheme (the card itself stays public).
    """
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentExtension,
        AgentInterface,
        AgentSkill,
        HTTPAuthSecurityScheme,
        SecurityRequirement,
        SecurityScheme,
        StringList,
    )
    from google.protobuf.json_format import ParseDict
    from google.protobuf.struct_pb2 import Struct

    from ... import __version__
    from ...core.schemas import input_schema, output_schema

    description = step.description or f"The {step.name} workflow"
    params = ParseDict({"input_schema": input_schema(step), "output_schema": output_schema(step)}, Struct())
    described = [
        AgentSkill(
            id=skill.get("id", skill["name"]),
            name=skill["name"],
            description=skill.get("description", description),
            tags=list(skill.get("tags", tags)) or ["workflow"],
            examples=list(skill.get("examples", ())),
        )
        for skill in skills
    ] or [
        AgentSkill(
            id=step.name,
            name=step.name,
            description=description,
            tags=list(tags) or ["workflow"],
            examples=list(examples),
        )
    ]
    card = AgentCard(
        name=step.name,
        description=description,
        version=version or __version__,
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION)],
        capabilities=AgentCapabilities(
            streaming=True,
            extensions=[
                AgentExtension(
                    uri=SCHEMAS_EXTENSION,
                    description="JSON Schemas of the inputs (a data part) and outputs (the outputs artifact)",
                    required=False,
                    params=params,
                )
            ],
        ),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=described,
    )
    if bearer_auth:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList(list=[])}))
    return card
