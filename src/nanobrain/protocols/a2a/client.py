"""Remote A2A agents as steps and tools, over a2a-sdk's 1.0 client.

The agent card is fetched once and checked (a JSON-RPC interface of protocol 1.x, streaming,
the skill asked for). A call streams: the remote's token artifact chunks become tokens of the
calling run, its status updates `a2a_status` events; the outputs artifact is the result. A call
that exceeds its timeout cancels the remote task. Calls may go through a circuit breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...core.context import current_context
from ...core.data_units import DataUnit
from ...core.steps import Step
from ...llm.tools import Tool
from ...optional import require
from ..errors import ProtocolError

if TYPE_CHECKING:
    from a2a.types import AgentCard

    from ...infrastructure.parallel.breaker import CircuitBreaker
    from ...infrastructure.services.registry import ServiceRegistry


class RemoteAgent:
    """One remote A2A agent: `await agent.send("hi")` or `await agent.send({"x": 1})`.

    The agent is at `url`, or is the A2A agent registered as `service` in a service registry
    (`registry`: a `ServiceRegistry` or its URL): its URL is looked up when the agent first
    connects, and again after a failed call, so a replica that went away is replaced by a live one.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        skill: str | None = None,
        name: str | None = None,
        breaker: CircuitBreaker | None = None,
        service: str | None = None,
        registry: ServiceRegistry | str | None = None,
    ) -> None:
        if (url is None) == (service is None):
            raise ValueError("give an A2A agent exactly one of a url or the name of a registered service")
        if service is not None and registry is None:
            raise ValueError(
                f"the A2A agent registered as {service!r} needs a service registry: "
                "set NANOBRAIN_REGISTRY_URL (or give `registry:`)"
            )
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"A2A agent url must start with http:// or https://, got {url!r}")
        self.service = service
        self.registry = registry
        self._owned_registry: ServiceRegistry | None = None
        #: Where the agent is: its URL, or `service:NAME` until a registered service is looked up.
        self.url = url.rstrip("/") if url is not None else f"service:{service}"
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.skill = skill
        self.name = name
        self.breaker = breaker
        self._card: AgentCard | None = None
        self._http: Any = None
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"RemoteAgent({self.url!r})" if self.service is None else f"RemoteAgent(service={self.service!r})"

    async def card(self) -> AgentCard:
        """The agent's card, fetched and checked once."""
        await self._connect()
        assert self._card is not None
        return self._card

    async def send(self, content: str | Mapping[str, Any]) -> Any:
        """Send one message; return the remote's outputs (a dict, or text when it answered only text)."""
        if self.breaker is not None:
            return await self.breaker.call(lambda: self._send(content))
        return await self._send(content)

    async def aclose(self) -> None:
        await self._disconnect()
        owned, self._owned_registry = self._owned_registry, None
        if owned is not None:
            await owned.aclose()

    async def _disconnect(self) -> None:
        client, http = self._client, self._http
        self._client = self._http = self._card = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()

    async def _locate(self) -> None:
        """Look the registered service up: a live one, chosen at random among its replicas."""
        import random

        from ...infrastructure.services.registry import A2A_AGENT, open_registry

        registry = self.registry
        if isinstance(registry, str):
            if self._owned_registry is None:
                self._owned_registry = open_registry(registry)
            registry = self._owned_registry
        assert registry is not None and self.service is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                found = await registry.discover(A2A_AGENT, self.service)
                live = [] if found else sorted({r.name for r in await registry.discover(A2A_AGENT)})
        except Exception as exc:
            raise ProtocolError(
                f"A2A agent {self.service!r}: the service registry at {registry.url} failed: {_reason(exc)}",
                retryable=True,
            ) from exc
        if not found:
            raise ProtocolError(
                f"no live A2A agent is registered as {self.service!r} in the service registry at {registry.url} "
                f"(registered: {', '.join(live) or 'none'})",
                retryable=True,
            )
        self.url = random.choice(found).url.rstrip("/")

    # -- Toolset: the agent as one tool of a local agent ---------------------------------------
    async def tools(self) -> list[Tool]:
        card = await self.card()
        schema = _input_schema(card) or {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "What to ask the agent"}},
            "required": ["message"],
        }
        schema = {k: v for k, v in schema.items() if k not in ("title", "description")}

        async def ask(**arguments: Any) -> Any:
            if set(arguments) == {"message"} and "message" not in schema.get("properties", {}):
                return await self.send(str(arguments["message"]))
            return await self.send(arguments)

        tool_name = _tool_name(self.name or card.name)
        return [Tool(tool_name, card.description or f"Ask the {card.name} agent", schema, ask)]

    # -- internals ---------------------------------------------------------------------------
    async def _connect(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None:
                return
            require("a2a", extra="a2a", purpose="an A2A client")
            if self.service is not None:
                await self._locate()
            import httpx
            from a2a.client import ClientConfig
            from a2a.client.card_resolver import A2ACardResolver
            from a2a.client.client_factory import ClientFactory

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout))
            try:
                card = await asyncio.wait_for(A2ACardResolver(http, self.url).get_agent_card(), self.connect_timeout)
            except Exception as exc:
                await http.aclose()
                raise ProtocolError(
                    f"A2A agent at {self.url}: its card could not be fetched: {_reason(exc)}", retryable=True
                ) from exc
            try:
                self._check(card)
            except ProtocolError:
                await http.aclose()
                raise
            self._card = card
            self._http = http
            self._client = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)

    def _check(self, card: AgentCard) -> None:
        where = f"A2A agent at {self.url} ({card.name or 'unnamed'})"
        bindings = [(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces]
        if not any(binding.upper() == "JSONRPC" for binding, _ in bindings):
            raise ProtocolError(f"{where} offers no JSON-RPC interface (it offers {bindings or 'none'})")
        if self.skill is not None and self.skill not in {s.id for s in card.skills} | {s.name for s in card.skills}:
            known = ", ".join(s.id for s in card.skills) or "none"
            raise ProtocolError(f"{where} has no skill {self.skill!r} (skills: {known})")

    async def _send(self, content: str | Mapping[str, Any]) -> Any:
        await self._connect()
        try:
            return await self._call(content)
        except ProtocolError:
            if self.service is not None:
                await self._disconnect()  # the next call looks the service up again
            raise

    async def _call(self, content: str | Mapping[str, Any]) -> Any:
        from a2a.helpers.proto_helpers import new_data_part
        from a2a.types import CancelTaskRequest, Message, Part, Role, SendMessageRequest

        part = Part(text=content) if isinstance(content, str) else new_data_part(dict(content))
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[part])
        state = _CallState()
        try:
            async with asyncio.timeout(self.timeout):
                async for event in self._client.send_message(SendMessageRequest(message=message)):
                    state.take(event)
        except TimeoutError:
            if state.task_id:
                # Do not leave the remote working on an answer nobody will read.
                # Best effort: a failed cancel must not hide the timeout.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.connect_timeout):
                        await self._client.cancel_task(CancelTaskRequest(id=state.task_id))
            raise ProtocolError(
                f"A2A agent at {self.url} did not answer within {self.timeout:g}s"
                + (f" (task {state.task_id} cancelled)" if state.task_id else ""),
                retryable=True,
            ) from None
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"A2A agent at {self.url} failed: {_reason(exc)}", retryable=True) from exc
        return state.result(self.url)


class _CallState:
    """What a streamed call has seen: the task, its last state, the artifacts' parts."""

    def __init__(self) -> None:
        self.task_id = ""
        self.state = 0
        self.status_text = ""
        self.outputs: list[Any] = []
        #: Text chunks by artifact id (appended chunks join without a separator).
        self.texts: dict[str, list[str]] = {}
        self.reply_text = ""

    def take(self, event: Any) -> None:
        from a2a.helpers.proto_helpers import get_text_parts

        context = current_context()
        kind = event.WhichOneof("payload")
        if kind == "message":
            self.reply_text = "\n".join(get_text_parts(list(event.message.parts)))
            return
        if kind == "task":
            self.task_id = event.task.id
            self._status(event.task.status, context)
            for artifact in event.task.artifacts:
                self._artifact(artifact, context, whole=True)
        elif kind == "status_update":
            self.task_id = self.task_id or event.status_update.task_id
            self._status(event.status_update.status, context)
        elif kind == "artifact_update":
            self._artifact(event.artifact_update.artifact, context, whole=False)

    def _status(self, status: Any, context: Any) -> None:
        from a2a.helpers.proto_helpers import get_text_parts
        from a2a.types import TaskState

        self.state = status.state
        self.status_text = "\n".join(get_text_parts(list(status.message.parts)))
        if context is not None:
            context.report("a2a_status", task=self.task_id, state=TaskState.Name(status.state), text=self.status_text)

    def _artifact(self, artifact: Any, context: Any, *, whole: bool) -> None:
        from a2a.helpers.proto_helpers import get_data_parts, get_text_parts

        texts = get_text_parts(list(artifact.parts))
        if artifact.name == "tokens":
            if context is not None and not whole:
                for text in texts:
                    context.token(text)
            return
        data = get_data_parts(list(artifact.parts))
        if artifact.name == "outputs" and data:
            self.outputs = data
        chunks = self.texts.setdefault(artifact.artifact_id, [])
        if whole:
            chunks.clear()
        chunks.extend(texts)

    def result(self, url: str) -> Any:
        from a2a.types import TaskState

        if self.reply_text and not self.task_id:
            return self.reply_text
        if self.state == TaskState.TASK_STATE_COMPLETED:
            if self.outputs and isinstance(self.outputs[-1], dict):
                return _whole_numbers(self.outputs[-1])
            return "\n".join("".join(chunks) for chunks in self.texts.values())
        name = TaskState.Name(self.state).removeprefix("TASK_STATE_").lower().replace("_", "-")
        detail = f": {self.status_text}" if self.status_text else ""
        raise ProtocolError(f"A2A agent at {url}: task {self.task_id} ended {name}{detail}")


def _whole_numbers(value: Any) -> Any:
    """protobuf's Value keeps every number as a double: give whole ones back as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _input_schema(card: AgentCard) -> dict[str, Any] | None:
    from google.protobuf.json_format import MessageToDict

    from .card import SCHEMAS_EXTENSION

    for extension in card.capabilities.extensions:
        if extension.uri == SCHEMAS_EXTENSION:
            schema = MessageToDict(extension.params).get("input_schema")
            return schema if isinstance(schema, dict) else None
    return None


def _tool_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "remote_agent"
    return cleaned[:64]


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


class A2AAgentStep(Step):
    """A remote A2A agent as a step: input `message` (text) or the given inputs (sent as data);
    output `reply` (the remote's single output, or all its outputs as a dict)."""

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        token: str | None = None,
        call_timeout: float = 120.0,
        skill: str | None = None,
        breaker: CircuitBreaker | None = None,
        service: str | None = None,
        registry: ServiceRegistry | str | None = None,
        **options: Any,
    ) -> None:
        units = {n: DataUnit(n, t) for n, t in (inputs or {"message": str}).items()}
        super().__init__(name, inputs=units, outputs={"reply": None}, **options)
        self.remote = RemoteAgent(
            url, token=token, timeout=call_timeout, skill=skill, name=name, breaker=breaker,
            service=service, registry=registry,
        )  # fmt: skip
        where = f"at {url}" if url is not None else f"registered as {service!r}"
        self.description = self.description or f"The A2A agent {where}"

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        content: str | dict[str, Any]
        if list(inputs) == ["message"] and isinstance(inputs["message"], str):
            content = inputs["message"]
        else:
            content = json.loads(json.dumps(inputs, default=str))
        outputs = await self.remote.send(content)
        if isinstance(outputs, dict) and len(outputs) == 1:
            return {"reply": next(iter(outputs.values()))}
        return {"reply": outputs}

    async def aclose(self) -> None:
        await self.remote.aclose()
