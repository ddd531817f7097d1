"""Nothing the chat acknowledged is lost, however its process ends: real processes, real signals.

The model is the scripted one streaming slowly (see scripted_nanobrain.py); everything else is
real: the CLI, the signal handling, the SQLite history, read back as another process would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

DRIVER = Path(__file__).with_name("scripted_nanobrain.py")
ROOT = Path(__file__).resolve().parents[2]
#: 600 characters streamed 3 at a time every 20 ms: about 150 characters a second, 4 s in all.
ANSWER = "".join(f"word{i:03d} " for i in range(75))
FIRST_LINE = "The first line.\n"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_DATABASE_URL", "NANOBRAIN_DEBUG")}
    env.update(
        NANOBRAIN_HOME=str(home), NANOBRAIN_MODEL="scripted", NB_TEST_ANSWER=ANSWER, NB_TEST_CHUNK="3",
        NB_TEST_DELAY="0.02", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
    )  # fmt: skip
    env.update(extra)
    return env


def _chat(env: dict[str, str], *args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, str(DRIVER), "chat", *args], env=env, cwd=ROOT, **popen
    )


def _read_until(stream: IO[bytes], count: int, timeout: float = 30) -> bytes:
    """Read from a pipe until `count` bytes came (the answer is streaming)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < count:
        assert time.monotonic() < deadline, f"only {data!r} arrived"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"the output ended after {data!r}"
        data += chunk
    return data


def _stored(home: Path, session: str | None = None) -> list[tuple[str, str, dict]]:
    """The messages of `session` (or of the only session), read the way another process would."""
    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.data.history import ConversationHistory
    from nanobrain.infrastructure.data.sessions import SessionManager

    async def read() -> list[tuple[str, str, dict]]:
        database = Database(f"sqlite+aiosqlite:///{home}/nanobrain.db")
        try:
            name = session
            if name is None:
                sessions = await SessionManager(database).list()
                assert len(sessions) == 1, sessions
                name = sessions[0].id
            stored = await ConversationHistory(database).messages(name)
            return [(m.message.role, m.message.content, m.metadata) for m in stored]
        finally:
            await database.aclose()

    return asyncio.run(read())


def _sessions(home: Path) -> list[str]:
    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.data.sessions import SessionManager

    async def read() -> list[str]:
        database = Database(f"sqlite+aiosqlite:///{home}/nanobrain.db")
        try:
            return [s.id for s in await SessionManager(database).list()]
        finally:
            await database.aclose()

    if not (home / "nanobrain.db").exists():
        return []
    return asyncio.run(read())


def _assert_partial_kept(home: Path, printed: str) -> str:
    """The question and the partial answer are stored, the answer marked interrupted; returns it."""
    stored = _stored(home)
    assert [role for role, _, _ in stored] == ["user", "assistant"], stored
    assert stored[0][1] == "question"
    partial = stored[1][1]
    assert stored[1][2] == {"agent": "assistant", "interrupted": True}
    assert ANSWER.startswith(partial) and len(partial) < len(ANSWER)
    assert partial.startswith(printed.rstrip("\n")), (partial, printed)
    return partial


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_stop_signal_mid_answer_keeps_the_question_and_the_partial_answer(
    tmp_path: Path, signum: signal.Signals
) -> None:
    child = _chat(_env(tmp_path), "--once", "question", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    printed = _read_until(child.stdout, 60)
    child.send_signal(signum)
    rest, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signum, err
    assert b"Traceback" not in err
    assert b"partial answer was kept" in err
    _assert_partial_kept(tmp_path, (printed + rest).decode())


def test_sigterm_ends_the_interactive_chat_and_keeps_the_partial_answer(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, [str(DRIVER), "chat"], env=_env(tmp_path), cwd=str(ROOT), encoding="utf-8",
        timeout=30, dimensions=(40, 160),
    )  # fmt: skip
    child.expect("you> ")
    child.sendline("question")
    child.expect("word010")
    child.kill(signal.SIGTERM)
    child.expect(r"partial answer was kept")
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus is None and child.exitstatus == 143
    assert "Traceback" not in child.before
    _assert_partial_kept(tmp_path, "")


def test_closing_the_terminal_keeps_the_partial_answer(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, [str(DRIVER), "chat"], env=_env(tmp_path), cwd=str(ROOT), encoding="utf-8",
        timeout=30, dimensions=(40, 160),
    )  # fmt: skip
    child.expect("you> ")
    child.sendline("question")
    child.expect("word010")
    os.close(child.child_fd)  # the terminal window is closed: the kernel sends SIGHUP
    child.child_fd, child.closed = -1, True  # pexpect must not close it again
    _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP
    _assert_partial_kept(tmp_path, "")


def test_a_reader_that_goes_away_keeps_the_partial_answer(tmp_path: Path) -> None:
    env = _env(tmp_path, NB_TEST_ANSWER=FIRST_LINE + ANSWER)
    chat = _chat(env, "--once", "question", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert chat.stdout is not None and chat.stderr is not None
    head = subprocess.Popen(["head", "-1"], stdin=chat.stdout, stdout=subprocess.PIPE)
    chat.stdout.close()  # only `head` reads the chat's output now: `nanobrain chat --once ... | head -1`
    first, _ = head.communicate(timeout=30)
    err = chat.stderr.read()
    chat.wait(timeout=30)
    assert first == FIRST_LINE.encode()
    assert chat.returncode == 141, err
    assert b"Traceback" not in err
    stored = _stored(tmp_path)
    assert [role for role, _, _ in stored] == ["user", "assistant"]
    assert stored[1][2] == {"agent": "assistant", "interrupted": True}
    assert stored[1][1].startswith(FIRST_LINE) and len(stored[1][1]) < len(FIRST_LINE + ANSWER)


def test_kill_9_loses_at_most_the_last_fraction_of_a_second(tmp_path: Path) -> None:
    child = _chat(_env(tmp_path), "--once", "question", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    printed = _read_until(child.stdout, 240).decode()
    child.kill()  # SIGKILL: no handler runs, only what was checkpointed survives
    child.wait(timeout=30)
    stored = _stored(tmp_path)
    assert [role for role, _, _ in stored] == ["user", "assistant"]
    partial = stored[1][1]
    assert stored[1][2] == {"agent": "assistant", "interrupted": True}
    assert ANSWER.startswith(partial)
    # Checkpoints come every 0.3 s; at ~150 characters a second, one second's worth is a generous bound.
    assert len(partial) >= len(printed) - 150, (len(partial), len(printed))


def test_a_finished_answer_is_stored_whole_and_not_marked(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DRIVER), "chat", "--once", "question"], env=_env(tmp_path, NB_TEST_DELAY="0.005"),
        cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == ANSWER.strip()
    stored = _stored(tmp_path)
    assert [(role, text) for role, text, _ in stored] == [("user", "question"), ("assistant", ANSWER)]
    assert stored[1][2] == {"agent": "assistant"}


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["--session", "", "--once", "hi"], b"", "the session id '' is not valid"),
        (["--session", "a b", "--once", "hi"], b"", "the session id 'a b' is not valid"),
        (["--once"], b"caf\xe9 au lait", "standard input is not valid UTF-8 (byte 0xe9 at offset 3)"),
    ],
    ids=["empty-session", "session-with-space", "invalid-utf8-stdin"],
)
def test_bad_input_is_refused_before_any_work(tmp_path: Path, args: list[str], stdin: bytes, expected: str) -> None:
    done = subprocess.run(
        [sys.executable, str(DRIVER), "chat", *args], input=stdin, env=_env(tmp_path), cwd=ROOT,
        capture_output=True, timeout=60,
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert expected in err and "Traceback" not in err
    assert "word000" not in done.stdout.decode()  # no answer was generated
    assert _sessions(tmp_path) == []  # and no session was left behind


def test_a_model_that_cannot_be_used_creates_no_session(tmp_path: Path) -> None:
    env = _env(tmp_path, NANOBRAIN_MODEL="openai:gpt-4o-mini")
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(DRIVER), "chat", "--once", "hi"], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stderr.decode()
    assert _sessions(tmp_path) == []


def test_a_refused_message_creates_no_session(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DRIVER), "chat", "--once", "   "], env=_env(tmp_path), cwd=ROOT,
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Your message is empty" in done.stdout.decode()
    assert _sessions(tmp_path) == []


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [(">&-", "standard output is closed"), ("<&-", "standard input is closed")],
    ids=["stdout", "stdin"],
)
def test_closed_standard_streams_are_a_clear_error(tmp_path: Path, redirect: str, expected: str) -> None:
    command = f'"{sys.executable}" "{DRIVER}" chat --once {redirect}'
    done = subprocess.run(["sh", "-c", command], env=_env(tmp_path), cwd=ROOT, capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert expected in err
    assert "Traceback" not in err and "AttributeError" not in err


def test_a_model_that_fails_to_load_is_not_switched_to(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, [str(DRIVER), "chat"], env=_env(tmp_path, NB_TEST_ANSWER="still here", NB_TEST_DELAY="0"),
        cwd=str(ROOT), encoding="utf-8", timeout=60, dimensions=(40, 200),
    )  # fmt: skip
    child.expect("you> ")
    child.sendline("/model local:/etc/passwd")
    child.expect("cannot use 'local:/etc/passwd'")
    child.expect("you> ")
    child.sendline("/model")
    child.expect("model: scripted")
    child.expect("you> ")
    child.sendline("hello")
    child.expect("still here")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_an_undecodable_line_in_the_interactive_chat_is_refused_and_not_stored(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, [str(DRIVER), "chat"], env=_env(tmp_path, NB_TEST_DELAY="0"), cwd=str(ROOT),
        timeout=60, dimensions=(40, 200),
    )  # fmt: skip
    child.expect(rb"session (\w+)")
    session = child.match.group(1).decode()
    child.expect(b"you> ")
    child.send(b"caf\xe9 au lait\r")
    child.expect(b"not valid UTF-8")
    child.expect(b"you> ")
    child.sendline(b"/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert _stored(tmp_path, session) == []  # nothing reached the history (or the model)
