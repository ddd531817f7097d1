"""LLM response caching: L1 on repeat, L2 after a restart, L3 without Redis data; keys; streams; events."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.infrastructure.cache import CacheHierarchy, CachingProvider, LRUCache, cache_key
from nanobrain.infrastructure.cache.llm_cache import dump_completion, load_completion
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.kv import MemoryKeyValueStore, RedisKeyValueStore, SQLKeyValueStore
from nanobrain.llm import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    ProviderError,
    ScriptedModel,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
    collect,
)

REQUEST = ChatRequest((Message.system("be brief"), Message.user("What is 6 x 7?")), temperature=0.0)


@dataclass
class Services:
    """What survives a restart: the Redis prefix and the SQL database (not the process's L1)."""

    redis_client: Any
    redis_prefix: str
    database: Database
    opened: list[Database]

    def hierarchy(self) -> CacheHierarchy:
        # A "new process": a fresh L1, a new connection to the same SQL database and Redis prefix.
        db = Database(self.database.url, schema=self.database.schema)
        self.opened.append(db)
        return CacheHierarchy(
            [LRUCache(100), RedisKeyValueStore(self.redis_client, prefix=self.redis_prefix), SQLKeyValueStore(db)]
        )


@pytest.fixture
async def services(redis_client: Any, redis_prefix: str, database: Database) -> AsyncIterator[Services]:
    found = Services(redis_client, redis_prefix, database, [])
    yield found
    for db in found.opened:
        await db.aclose()


async def test_repeated_call_from_l1_then_l2_after_restart_then_l3_and_promoted_back(services: Services) -> None:
    model = ScriptedModel(["42"])
    first = CachingProvider(model, services.hierarchy())
    answer = await first.complete(REQUEST)
    assert answer.message.content == "42"
    again = await first.complete(REQUEST)
    assert again == answer
    assert len(model.requests) == 1  # the second call never reached the model
    assert first.cache.stats()["L1"]["hits"] == 1

    # Restart: a new hierarchy (empty L1) over the same Redis prefix and SQL database.
    second = CachingProvider(model, services.hierarchy())
    assert await second.complete(REQUEST) == answer
    stats = second.cache.stats()
    assert (stats["L1"]["misses"], stats["L2"]["hits"], stats["L3"]["hits"]) == (1, 1, 0)

    # Redis loses its data: a new process is served from SQL, and the answer is promoted back.
    keys = [k async for k in services.redis_client.scan_iter(match=services.redis_prefix + "*")]
    await services.redis_client.delete(*keys)
    third = CachingProvider(model, services.hierarchy())
    assert await third.complete(REQUEST) == answer
    stats = third.cache.stats()
    assert (stats["L2"]["misses"], stats["L3"]["hits"]) == (1, 1)
    key = third.key(REQUEST)
    assert key is not None
    assert await services.redis_client.exists(services.redis_prefix + key)  # back in L2
    assert (await third.cache.lookup(key)).level == "L1"  # and in L1
    assert len(model.requests) == 1


async def test_cache_events_in_a_run_and_streams_replayed(services: Services) -> None:
    model = ScriptedModel(["The answer is forty-two, as always."], chunk_size=5)
    agent = Agent("answer", model=CachingProvider(model, services.hierarchy()), memory=False)
    workflow = nb.Workflow("ask", inputs={"message": str}, outputs={"reply": str}, steps=[agent])
    workflow.link("inputs.message", "answer.message")
    workflow.link("answer.reply", "outputs.reply")

    runs = []
    for _ in range(2):
        runs.append([e async for e in workflow.stream(message="question")])
    assert len(model.requests) == 1

    def cache_events(events: list[nb.RunEvent]) -> list[dict[str, Any]]:
        return [e.data for e in events if isinstance(e, nb.Custom) and e.name == "cache"]

    def text(events: list[nb.RunEvent]) -> str:
        return "".join(e.text for e in events if isinstance(e, nb.Token))

    (miss,) = cache_events(runs[0])
    (hit,) = cache_events(runs[1])
    assert (miss["hit"], miss["level"], miss["missed"]) == (False, None, ["L1", "L2", "L3"])
    assert (hit["hit"], hit["level"], hit["missed"]) == (True, "L1", [])
    assert hit["key"] == miss["key"] and hit["key"].startswith("llm:")
    # The cached answer streams as tokens, like a fresh one.
    assert text(runs[0]) == text(runs[1]) == "The answer is forty-two, as always."
    finished = [e.outputs for e in runs[1] if isinstance(e, nb.RunFinished)]
    assert finished == [{"reply": "The answer is forty-two, as always."}]


async def test_stream_replays_tool_calls_and_the_final_completion() -> None:
    call = ToolCall("call_1", "add", {"a": 1, "b": 2})
    original = Completion(Message.assistant("adding", (call,)), Usage(7, 3), "m-1", "tool_calls")
    model = ScriptedModel([original])
    provider = CachingProvider(model, CacheHierarchy([LRUCache(10)]), chunk_size=3)
    fresh = [c async for c in provider.stream(REQUEST)]
    replayed = [c async for c in provider.stream(REQUEST)]
    assert len(model.requests) == 1
    assert fresh[-1] == replayed[-1] == Finished(original)
    assert [c.text for c in replayed if isinstance(c, TextDelta)] == ["add", "ing"]
    calls = [c for c in replayed if isinstance(c, ToolCallDelta)]
    assert calls == [ToolCallDelta(0, "call_1", "add", '{"a": 1, "b": 2}')]
    assert await collect(provider.stream(REQUEST)) == original
    assert await provider.complete(REQUEST) == original


async def test_an_abandoned_stream_or_a_failure_caches_nothing() -> None:
    model = ScriptedModel(["a long answer in many chunks", ProviderError("boom"), "later"], chunk_size=2)
    provider = CachingProvider(model, CacheHierarchy([LRUCache(10)]))
    stream = provider.stream(REQUEST)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match="boom"):
        await provider.complete(REQUEST)
    assert (await provider.complete(REQUEST)).message.content == "later"
    assert len(model.requests) == 3


def test_the_key_covers_everything_that_shapes_the_answer() -> None:
    model = ScriptedModel(model="m1")
    base = cache_key(model, REQUEST)
    assert base is not None and base.startswith("llm:") and len(base) == 4 + 64
    same = ChatRequest((Message.system("be brief"), Message.user("What is 6 x 7?")), temperature=0.0)
    assert cache_key(model, same) == base
    tool = ToolSpec("add", "adds", {"type": "object"})
    variants = [
        ChatRequest((Message.user("What is 6 x 7?"),), temperature=0.0),
        ChatRequest(REQUEST.messages, temperature=0.5),
        ChatRequest(REQUEST.messages, temperature=0.0, max_tokens=5),
        ChatRequest(REQUEST.messages, temperature=0.0, tools=(tool,)),
        ChatRequest(REQUEST.messages, temperature=0.0, tools=(tool,), tool_choice="add"),
        ChatRequest(REQUEST.messages, temperature=0.0, response_schema={"type": "object"}),
        ChatRequest(REQUEST.messages, temperature=0.0, stop=("\n",)),
        ChatRequest(REQUEST.messages, temperature=0.0, extra={"seed": 1}),
    ]
    keys = {cache_key(model, v) for v in variants}
    assert len(keys) == len(variants) and base not in keys
    assert cache_key(ScriptedModel(model="m2"), REQUEST) != base  # another model
    # Dict order does not matter; objects that are not JSON data make the request uncacheable.
    one = ChatRequest(REQUEST.messages, extra={"a": 1, "b": [1, 2]})
    two = ChatRequest(REQUEST.messages, extra={"b": [1, 2], "a": 1})
    assert cache_key(model, one) == cache_key(model, two)
    assert cache_key(model, ChatRequest(REQUEST.messages, extra={"x": object()})) is None


def test_the_key_is_the_same_in_another_process() -> None:
    here = cache_key(ScriptedModel(model="m1"), REQUEST)
    code = (
        "from nanobrain.llm import ChatRequest, Message, ScriptedModel;"
        "from nanobrain.infrastructure.cache import cache_key;"
        "r = ChatRequest((Message.system('be brief'), Message.user('What is 6 x 7?')), temperature=0.0);"
        "print(cache_key(ScriptedModel(model='m1'), r))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == here


async def test_uncacheable_requests_go_to_the_model_every_time() -> None:
    model = ScriptedModel(["one", "two"])
    provider = CachingProvider(model, CacheHierarchy([LRUCache(10)]))
    request = ChatRequest(REQUEST.messages, extra={"callback": object()})
    assert [(await provider.complete(request)).message.content for _ in range(2)] == ["one", "two"]


async def test_completions_round_trip_and_foreign_entries_are_misses() -> None:
    completion = Completion(
        Message.assistant("ok", (ToolCall("c1", "search", {"q": "ünïcode", "n": [1, 2]}),)), Usage(11, 4), "m", "length"
    )
    assert load_completion(dump_completion(completion)) == completion
    assert load_completion(b"not json") is None
    assert load_completion(b'{"format": 99}') is None

    store = MemoryKeyValueStore()
    cache = CacheHierarchy([store])
    model = ScriptedModel(["fresh"])
    provider = CachingProvider(model, cache, ttl=60)
    key = provider.key(REQUEST)
    assert key is not None
    await cache.set(key, b"garbage from another version")
    assert (await provider.complete(REQUEST)).message.content == "fresh"  # treated as a miss, then replaced
    assert (await provider.complete(REQUEST)).message.content == "fresh"
    assert len(model.requests) == 1
    assert await store.ttl(key) == pytest.approx(60, abs=1)
