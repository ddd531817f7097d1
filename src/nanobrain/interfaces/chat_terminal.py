"""`nanobrain chat`: the chat workflow in a terminal, with streamed answers and slash commands."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core.errors import NanoBrainError
from ..core.events import RunFinished, Token
from ..workflows.chat.app import ChatApp, InvalidChatInput, check_session_id
from .signals import Stopped, StopSignals

HELP = """\
Type a message and press Enter. End a line with \\ to continue on the next line, or wrap
several lines in triple quotes (\"\"\"). Ctrl-C stops an answer; Ctrl-C or Ctrl-D at the prompt exits.

  /help            this help
  /new             start a new session
  /sessions        list recent sessions
  /resume ID       continue a session (shows its history)
  /export FILE     export this session (.json, .jsonl, .csv or .md)
  /model [SPEC]    show the model, or switch (local, openai:MODEL, anthropic:MODEL, ...)
  /quit            leave
"""


@dataclass
class ChatState:
    app: ChatApp
    session: str
    out: Console
    err: Console
    stop: StopSignals = field(default_factory=StopSignals)
    read_line: Callable[[str], str] = input
    transcript: list[str] = field(default_factory=list)


def run_chat(
    *,
    config: Path | None,
    model: str | None,
    session: str | None,
    database_url: str | None,
    once: bool,
    message: str | None,
    out: Console,
    err: Console,
) -> int:
    """Open the chat, then answer once (`--once`) or run the interactive loop. Returns the exit code.

    Every input is checked before any work: a bad session id or a refused `--once` message loads
    no model, creates no session and stores nothing. SIGINT, SIGTERM and SIGHUP stop an answer
    with its partial text kept (marked interrupted); SIGTERM and SIGHUP then end the chat.
    """
    if session is not None:
        check_session_id(session)
    text = None
    if once:
        text = message if message is not None else read_stdin()
    with StopSignals() as stop, asyncio.Runner() as runner:
        app = stop.run(runner, ChatApp.open(config=config, model=model, database_url=database_url))
        try:
            if text is not None:
                refused = app.check_message(text)
                if refused is not None:
                    out.print(Text(refused, style="yellow"))
                    return 1
            session_id = _start(runner, stop, app, session, err)
            state = ChatState(app, session_id, out, err, stop)
            if text is not None:
                return _answer(runner, state, text, interactive=False)
            _banner(state)
            return _loop(runner, state)
        finally:
            # Closing must finish even when a signal ends the chat: run it without `stop`.
            runner.run(app.aclose())


def read_stdin() -> str:
    """All of standard input as text; a clear error when it is closed or not UTF-8."""
    if sys.stdin is None:
        raise InvalidChatInput("standard input is closed: pass the message as an argument (nanobrain chat --once TEXT)")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidChatInput(
            f"standard input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "send the message as UTF-8 text"
        ) from None


def _start(runner: asyncio.Runner, stop: StopSignals, app: ChatApp, session: str | None, err: Console) -> str:
    """Load the model, then open the session; returns the session id.

    In this order, so that a model that cannot be used leaves no empty session behind.
    """

    async def start() -> str:
        await app.warm_up()
        return await _open_session(app, session)

    if not err.is_terminal:
        return stop.run(runner, start())
    with err.status(f"Loading model {', '.join(app.models())}…", spinner="dots"):
        return stop.run(runner, start())


async def _open_session(app: ChatApp, session: str | None) -> str:
    if session is None:
        return await app.new_session()
    await app.open_session(session)
    return session


def _banner(state: ChatState) -> None:
    state.err.print(
        Text.assemble(
            ("NanoBrain chat", "bold"),
            f" · model {', '.join(state.app.models())} · session {state.session}\n",
            ("Type /help for commands, /quit to leave.", "dim"),
        )
    )


def _loop(runner: asyncio.Runner, state: ChatState) -> int:
    while True:
        try:
            text = read_message(state.read_line)
        except EOFError:
            _say(state.err)
            return 0
        except Stopped as stopped:  # at the prompt: nothing to keep
            _say(state.err)
            return 0 if stopped.signum == signal.SIGINT else stopped.exit_code
        except KeyboardInterrupt:
            _say(state.err)
            return 0
        except UnicodeDecodeError:
            state.err.print(Text("That line is not valid UTF-8 text; it was not sent.", style="red"))
            continue
        if text is None:
            continue
        if text.startswith("/"):
            try:
                if state.stop.run(runner, command(state, text)) == "quit":
                    return 0
            except Stopped as stopped:
                state.err.print(Text("(cancelled)", style="dim"))
                if stopped.signum != signal.SIGINT:
                    return stopped.exit_code
            except Exception as exc:  # a failed command is reported; the conversation goes on
                state.err.print(Text(f"error: {_describe(exc)}", style="red"))
            continue
        try:
            code = _answer(runner, state, text, interactive=True)
        except Exception as exc:  # e.g. the model's server is down: say so and keep the chat open
            state.out.file.write("\n")
            state.err.print(Text(f"error: {_describe(exc)}", style="red"))
            continue
        if code > 128:  # SIGTERM or SIGHUP: the answer so far is stored; leave
            return code


def _say(console: Console, *message: Text) -> None:
    """Print, unless the terminal is gone (after SIGHUP writes fail; what matters is stored)."""
    try:
        console.print(*message)
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    """The original error behind nested step failures, in one line."""
    from ..core.errors import StepError

    while isinstance(exc, StepError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, NanoBrainError) else str(exc)


def read_message(read_line: Callable[[str], str]) -> str | None:
    """One message from the user: `\\` at the end of a line continues it; triple quotes wrap a block."""
    first = read_line("you> ")
    if first.strip() == '"""':
        lines = []
        while (line := read_line("... ")).strip() != '"""':
            lines.append(line)
        return "\n".join(lines)
    lines = [first]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(read_line("... "))
    text = "\n".join(lines)
    if not text.strip() and not text:
        return None
    return text


def _answer(runner: asyncio.Runner, state: ChatState, text: str, *, interactive: bool) -> int:
    """Run one turn; the exit code (1 when the message was refused, 128 + N after signal N).

    In the interactive chat, Ctrl-C stops only the answer (exit code 0: the chat goes on).
    """
    try:
        answered = state.stop.run(runner, _turn(state, text))
    except Stopped as stopped:
        try:
            state.out.file.write("\n")
            state.out.file.flush()
        except OSError:
            pass
        _say(state.err, Text("[interrupted — the partial answer was kept]", style="yellow"))
        return 0 if interactive and stopped.signum == signal.SIGINT else stopped.exit_code
    return 0 if answered else 1


async def _turn(state: ChatState, text: str) -> bool:
    """Stream one turn to the terminal; False when validation refused the message.

    The workflow stores the message before the model is called and keeps the answer so far while
    it streams; however this ends (a signal, a reader that went away), closing the stream stops
    the turn and lets it store what it has before this returns.
    """
    app, out = state.app, state.out
    partial: list[str] = []
    reply: str | None = None
    answered = False
    # Workflow.stream is an async generator, typed as the iterator it is used as.
    async with aclosing(app.stream(state.session, text)) as events:  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, Token):
                if not partial and out.is_terminal:
                    out.file.write("\x1b[1mnanobrain>\x1b[0m ")
                partial.append(event.text)
                out.file.write(event.text)
                out.file.flush()
            elif isinstance(event, RunFinished) and event.path == app.workflow.name:
                reply = str(event.outputs.get("reply", ""))
                answered = "turn" in event.outputs
    if partial:
        out.file.write("\n")
        out.file.flush()
    elif reply is not None:
        # Nothing streamed: validation refused the message (or the model does not stream).
        out.print(Text(reply, style="yellow" if not answered else ""))
    return answered


async def command(state: ChatState, line: str) -> str | None:
    """Run a slash command; returns "quit" to leave."""
    name, _, argument = line.strip().partition(" ")
    argument = argument.strip()
    app, out, err = state.app, state.out, state.err
    if name in ("/quit", "/exit", "/q"):
        return "quit"
    if name == "/help":
        out.print(HELP, markup=False, highlight=False)
    elif name == "/new":
        state.session = await app.new_session()
        err.print(Text(f"new session {state.session}", style="green"))
    elif name == "/sessions":
        out.print(_sessions_table(await app.sessions(), state.session))
    elif name == "/resume":
        if not argument:
            err.print(Text("usage: /resume SESSION_ID (see /sessions)", style="red"))
            return None
        try:
            messages = await app.resume(argument)
        except LookupError as exc:
            err.print(Text(str(exc), style="red"))
            return None
        state.session = argument
        err.print(Text(f"resumed session {argument} ({len(messages)} messages)", style="green"))
        for message in messages[-20:]:
            if message.role in ("user", "assistant") and message.content:
                who = "you" if message.role == "user" else "nanobrain"
                out.print(Text.assemble((f"{who}> ", "bold"), message.content))
    elif name == "/export":
        if not argument:
            err.print(Text("usage: /export FILE (.json, .jsonl, .csv or .md)", style="red"))
            return None
        if Path(argument).suffix.lower() not in (".json", ".jsonl", ".csv", ".md", ".markdown"):
            err.print(Text("cannot export: name a file ending in .json, .jsonl, .csv or .md", style="red"))
            return None
        try:
            await app.export([state.session], argument)
        except (NanoBrainError, ValueError, OSError) as exc:
            err.print(Text(f"cannot export: {exc}", style="red"))
            return None
        err.print(Text(f"exported session {state.session} to {argument}", style="green"))
    elif name == "/model":
        if argument:
            try:
                await app.switch_model(argument)
            except Exception as exc:  # a bad model string: say why, keep the current model
                err.print(Text(f"cannot use {argument!r}: {exc}", style="red"))
                return None
        out.print(f"model: {', '.join(app.models())}")
    else:
        err.print(Text(f"unknown command {name} (try /help)", style="red"))
    return None


def _sessions_table(sessions: Any, current: str) -> Table:
    table = Table("id", "title", "updated", box=None, header_style="bold")
    for session in sessions:
        marker = " *" if session.id == current else ""
        updated = getattr(session, "updated_at", None)
        table.add_row(session.id + marker, session.title or "", str(updated or "")[:19])
    return table
