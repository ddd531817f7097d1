"""The chat workflow's steps and routing, with the scripted model and a real SQLite history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.llm import Message, ModelNotConfigured, ProviderError, ScriptedModel, call
from nanobrain.workflows.chat import ChatApp
from nanobrain.workflows.chat.app import InvalidChatInput
from nanobrain.workflows.chat.steps import EnrichContext, Route, ValidateInput


@pytest.fixture
async def model() -> ScriptedModel:
    return ScriptedModel(chunk_size=3)


@pytest.fixture
async def app(tmp_path: Path, model: ScriptedModel) -> AsyncIterator[ChatApp]:
    chat = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    yield chat
    await chat.aclose()


async def history_of(app: ChatApp, session: str) -> list:
    return await app.services.history.messages(session, limit=100)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "Your message is empty"),
        ("   \n ", "Your message is empty"),
        ("x" * 9000, "the limit is 8,000"),
        ("hello\x07world", "control characters ('\\x07')"),
    ],
)
async def test_bad_input_gets_a_clear_reply_and_never_reaches_the_model(
    app: ChatApp, model: ScriptedModel, text: str, expected: str
) -> None:
    session = await app.new_session()
    reply = await app.send(session, text)
    assert expected in reply
    assert model.requests == []
    assert await history_of(app, session) == []


async def test_a_turn_streams_tokens_and_is_persisted_before_it_counts(app: ChatApp, model: ScriptedModel) -> None:
    model.add("Hello there, friend.")
    session = await app.new_session()
    events = [e async for e in app.stream(session, "hi")]
    tokens = "".join(e.text for e in events if isinstance(e, nb.Token))
    assert tokens == "Hello there, friend."
    finished = [e.step for e in events if isinstance(e, nb.StepFinished)]
    assert finished.index("persist") > finished.index("format")
    stored = await history_of(app, session)
    assert [(m.message.role, m.message.content) for m in stored] == [
        ("user", "hi"),
        ("assistant", "Hello there, friend."),
    ]
    assert stored[1].model == "scripted"
    assert stored[1].usage is not None and stored[1].usage.completion_tokens == 3


async def test_history_is_sent_back_to_the_model_on_the_next_turn(app: ChatApp, model: ScriptedModel) -> None:
    model.add("Nice to meet you, Ada.", "You are Ada.")
    session = await app.new_session()
    await app.send(session, "I am Ada")
    assert await app.send(session, "Who am I?") == "You are Ada."
    sent = [(m.role, m.content) for m in model.requests[1].messages if m.role != "system"]
    assert sent == [("user", "I am Ada"), ("assistant", "Nice to meet you, Ada."), ("user", "Who am I?")]


async def test_tool_calls_and_results_are_persisted(tmp_path: Path) -> None:
    config = tmp_path / "chat.yaml"
    from nanobrain.workflows.chat import DEFAULT_CONFIG

    config.write_text(
        DEFAULT_CONFIG.read_text().replace(
            "      temperature: 0\n",
            "      temperature: 0\n      tools: [examples.assistant:word_count]\n",
        )
    )
    model = ScriptedModel([call("word_count", text="one two three"), "Three words."])
    app = await ChatApp.open(config=config, model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        session = await app.new_session()
        assert await app.send(session, "count: one two three") == "Three words."
        stored = [m.message for m in await history_of(app, session)]
        assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
        assert stored[1].tool_calls[0].name == "word_count"
        assert stored[2].content == "3"
    finally:
        await app.aclose()


async def test_routing_rules_choose_the_agent(app: ChatApp, model: ScriptedModel) -> None:
    model.add("code answer", "plain answer", "fenced answer")
    session = await app.new_session()
    await app.send(session, "my python function has a bug")
    await app.send(session, "what is the weather like")
    await app.send(session, "look at ```x = 1```")
    systems = [r.messages[0].content for r in model.requests]
    assert "programming assistant" in systems[0]
    assert "You are NanoBrain, a helpful assistant." in systems[1]
    assert "programming assistant" in systems[2]
    stored = await history_of(app, session)
    agents = [m.metadata.get("agent") for m in stored if m.message.role == "assistant"]
    assert agents == ["coder", "assistant", "coder"]


def test_route_rules_and_their_errors() -> None:
    route = Route(rules=[{"agent": "math", "keywords": ["sum"]}, {"agent": "math", "regex": r"\d+\s*[+*/-]\s*\d+"}])
    assert route.choose("what is the SUM of these") == "math"
    assert route.choose("2 + 2") == "math"
    assert route.choose("summary please") == "assistant"  # keywords match whole words only
    assert set(route.outputs) == {"assistant", "math"}
    with pytest.raises(ValueError, match=r"rules\[0\].regex is not a valid regular expression"):
        Route(rules=[{"agent": "x", "regex": "("}])
    with pytest.raises(ValueError, match=r"rules\[0\] needs 'agent'"):
        Route(rules=[{"keywords": ["a"]}])


def test_history_window_follows_the_token_budget() -> None:
    enrich = EnrichContext(history_tokens=10)
    messages = [Message.user("a" * 40), Message.assistant("b" * 16), Message.user("c" * 8), Message.assistant("d" * 8)]
    assert [m.content[0] for m in enrich.window(messages)] == ["b", "c", "d"]
    tool_call = call("f")
    orphan = [Message.assistant("", (tool_call,)), Message.tool(tool_call, "x" * 4), Message.assistant("ok")]
    assert [m.role for m in EnrichContext(history_tokens=2).window(orphan)] == ["assistant"]


async def test_preferences_and_retrieval_reach_the_prompt(tmp_path: Path, model: ScriptedModel) -> None:
    model.add("ok")
    app = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", user="ada")
    try:
        await app.services.sessions.set_preferences("ada", language="French")
        enrich = app.workflow.steps["enrich"]
        assert isinstance(enrich, EnrichContext)
        enrich.retrieve = lambda text: [f"fact about {text}"]
        session = await app.new_session()
        await app.send(session, "cats")
        prompt = model.requests[0].messages[-1].content
        assert "language: French" in prompt and "fact about cats" in prompt
        stored = await history_of(app, session)
        assert stored[0].message.content == "cats"  # the user's words as typed
    finally:
        await app.aclose()


async def test_the_message_is_stored_before_the_model_is_called(app: ChatApp, model: ScriptedModel) -> None:
    model.add(ProviderError("the model's server went away", provider="scripted"))
    session = await app.new_session()
    with pytest.raises(nb.StepError):
        await app.send(session, "please remember this question")
    stored = await history_of(app, session)
    assert [(m.message.role, m.message.content) for m in stored] == [("user", "please remember this question")]


def _slow_chat_config(tmp_path: Path, checkpoint: float, extra: str = "") -> Path:
    from nanobrain.workflows.chat import DEFAULT_CONFIG

    config = tmp_path / "chat.yaml"
    config.write_text(
        DEFAULT_CONFIG.read_text().replace("checkpoint_seconds: 0.3", f"checkpoint_seconds: {checkpoint}{extra}")
    )
    return config


async def test_the_answer_so_far_is_stored_while_it_streams(tmp_path: Path) -> None:
    answer = "".join(f"w{i:02d} " for i in range(40))
    model = ScriptedModel([answer], chunk_size=4, delay=0.02)  # 40 chunks, 0.8 s
    app = await ChatApp.open(
        config=_slow_chat_config(tmp_path, 0.1), model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    )
    try:
        session = await app.new_session()
        seen: list[str] = []
        drafts: list[tuple[str, dict]] = []
        async for event in app.stream(session, "tell me"):
            if isinstance(event, nb.Token):
                seen.append(event.text)
                if len(seen) % 10 == 0:
                    stored = await history_of(app, session)
                    if len(stored) == 2:
                        drafts.append((stored[1].message.content, stored[1].metadata))
        assert len(drafts) >= 2  # checkpoints were written while the answer streamed
        for text, metadata in drafts:
            assert answer.startswith(text) and text
            assert metadata == {"agent": "assistant", "interrupted": True}
        assert len(drafts[-1][0]) > len(drafts[0][0])
        stored = await history_of(app, session)
        assert [(m.message.role, m.message.content, m.metadata) for m in stored] == [
            ("user", "tell me", {}),
            ("assistant", answer, {"agent": "assistant"}),  # the draft became the answer
        ]
        assert stored[1].usage is not None
    finally:
        await app.aclose()


async def test_a_cancelled_turn_keeps_its_partial_answer_marked_interrupted(tmp_path: Path) -> None:
    model = ScriptedModel(["".join(f"w{i:02d} " for i in range(50))], chunk_size=4, delay=0.02)
    app = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    session = await app.new_session()
    seen: list[str] = []

    async def consume() -> None:
        async for event in app.stream(session, "tell me a story"):
            if isinstance(event, nb.Token):
                seen.append(event.text)

    try:
        task = asyncio.ensure_future(consume())
        while len(seen) < 5:
            await asyncio.sleep(0.01)
        task.cancel()  # what Ctrl-C, SIGTERM and SIGHUP do to a turn
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = await history_of(app, session)
        assert [m.message.role for m in stored] == ["user", "assistant"]
        assert stored[0].message.content == "tell me a story"
        assert stored[1].message.content.startswith("".join(seen))
        assert stored[1].metadata == {"agent": "assistant", "interrupted": True}
    finally:
        await app.aclose()


async def test_a_streamed_answer_with_tool_calls_is_stored_in_order(tmp_path: Path) -> None:
    tools = "\n      tools: [examples.assistant:word_count]"
    model = ScriptedModel(
        [Message.assistant("Let me count. ", (call("word_count", text="one two three"),)), "There are three words."],
        chunk_size=2, delay=0.03,
    )  # fmt: skip
    app = await ChatApp.open(
        config=_slow_chat_config(tmp_path, 0.05, tools), model=model,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
    )  # fmt: skip
    try:
        session = await app.new_session()
        assert [e async for e in app.stream(session, "count: one two three") if isinstance(e, nb.Token)]
        stored = await history_of(app, session)
        assert [(m.message.role, m.message.content) for m in stored] == [
            ("user", "count: one two three"),
            ("assistant", "Let me count. "),
            ("tool", "3"),
            ("assistant", "There are three words."),
        ]
        assert [m.seq for m in stored] == [1, 2, 3, 4]
        assert not any(m.metadata.get("interrupted") for m in stored)
    finally:
        await app.aclose()


async def test_a_chat_config_without_the_record_step_keeps_turns_in_order_and_interrupted_ones(tmp_path: Path) -> None:
    from nanobrain.workflows.chat import DEFAULT_CONFIG

    config = tmp_path / "old-chat.yaml"
    config.write_text(
        DEFAULT_CONFIG.read_text()
        .replace("checkpoint_seconds: 0.3", "checkpoint_seconds: 0.05")
        .replace("  - {from: validate.turn, to: record.turn}\n  - {from: record.turn, to: enrich.turn}",
                 "  - {from: validate.turn, to: enrich.turn}")
        .replace("  record:\n    kind: class\n    class: nanobrain.workflows.chat.steps:RecordMessage\n", "")
    )  # fmt: skip
    assert "RecordMessage" not in config.read_text()
    answer = "a slow answer that streams for a while"
    model = ScriptedModel([answer, answer], chunk_size=2, delay=0.02)
    app = await ChatApp.open(config=config, model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        session = await app.new_session()
        await app.send(session, "hi")
        seen: list[str] = []

        async def consume() -> None:
            async for event in app.stream(session, "and again"):
                if isinstance(event, nb.Token):
                    seen.append(event.text)

        task = asyncio.ensure_future(consume())
        while len(seen) < 8:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = await history_of(app, session)
        assert [(m.message.role, m.message.content, m.metadata) for m in stored[:3]] == [
            ("user", "hi", {}),
            ("assistant", answer, {"agent": "assistant"}),
            ("user", "and again", {}),  # stored with the first draft, just before it
        ]
        assert stored[3].message.role == "assistant" and stored[3].message.content.startswith("".join(seen))
        assert stored[3].metadata == {"agent": "assistant", "interrupted": True}
    finally:
        await app.aclose()


@pytest.mark.parametrize("session", ["", "two words", "x" * 129, "tab\there"])
async def test_a_bad_session_id_is_refused_before_any_work(
    app: ChatApp, model: ScriptedModel, session: str
) -> None:
    with pytest.raises(InvalidChatInput, match="session id"):
        await app.send(session, "hello")
    with pytest.raises(InvalidChatInput, match="session id"):
        await app.open_session(session)
    assert model.requests == []
    assert list(await app.sessions()) == []


async def test_switching_to_a_model_that_cannot_load_keeps_the_current_one(
    app: ChatApp, model: ScriptedModel, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # looks like a model file, but does not load
    before = app.models()
    for spec in (f"local:{broken}", "local:/etc/passwd", f"local:{tmp_path}"):
        with pytest.raises(ModelNotConfigured):
            await app.switch_model(spec)
        assert app.models() == before
    model.add("still the scripted model")
    session = await app.new_session()
    assert await app.send(session, "hi") == "still the scripted model"


def test_validate_input_limits_are_configurable() -> None:
    validate = ValidateInput(max_chars=5)
    assert validate.check("hello") is None
    assert "the limit is 5" in (validate.check("hello!") or "")
    assert ValidateInput().check("tab\tand\nnewline") is None
    # Undecodable input bytes (read with surrogateescape) never reach the model.
    assert "not valid UTF-8" in (ValidateInput().check(b"caf\xe9".decode("utf-8", "surrogateescape")) or "")


async def test_clean_up_finishes_even_when_cancelled_again() -> None:
    from nanobrain.workflows.chat.draft import finish_despite_cancel

    finished: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0.2)
        finished.append("written")

    task = asyncio.ensure_future(finish_despite_cancel(write()))
    for _ in range(3):  # e.g. the loop cancelling every task at shutdown, more than once
        await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["written"]


def test_the_checkpoint_interval_must_be_positive() -> None:
    from nanobrain.workflows.chat.steps import ChatAgentStep

    with pytest.raises(ValueError, match="checkpoint_seconds must be positive"):
        ChatAgentStep(name="assistant", checkpoint_seconds=0)
