"""Mistakes in the environment (database URL, NANOBRAIN_HOME, file encoding) get a clear message, not a "bug".

Each is a NanoBrainError: exit code 1, the message names what to fix, and there is neither a traceback
nor the `--debug` hint that the CLI gives for errors raised by code.
"""

from __future__ import annotations

import os
import socket
import textwrap
import uuid
from pathlib import Path

import pytest
from tests.conftest import require
from typer.testing import CliRunner, Result

from nanobrain.interfaces.cli import app

#: A model that is never reached: the database error comes first (the chat opens it to create a session).
UNREACHED_MODEL = "openai-compatible:m@http://127.0.0.1:9/v1"
DEBUG_HINT = "--debug"
POSTGRES = "127.0.0.1:5432"


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _env(**values: str | None) -> dict[str, str | None]:
    # CliRunner applies these to os.environ for the call; None removes a variable.
    base: dict[str, str | None] = {"NANOBRAIN_DATABASE_URL": None, "NANOBRAIN_DEBUG": None, "NANOBRAIN_MODEL": None}
    return {**base, **values}


def chat(env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(app, ["chat", "--model", UNREACHED_MODEL, "--once", "hi"], env=env)


def run(workflow: Path, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, ["run", str(workflow), "-i", "x=3"], env=env or _env())


def assert_clear_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    for text in expected:
        assert text in result.stderr, result.stderr
    assert DEBUG_HINT not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "Error:" not in result.stderr  # no exception class name: a message for people


def keeper(tmp_path: Path, store: str) -> Path:
    """A workflow whose output is kept in the store at `store` (opened when the run sets it)."""
    path = tmp_path / "keeper.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: keeper
            inputs: {{x: int}}
            outputs:
              total: {{type: int, kind: persistent, store: "{store}", key: keeper/total}}
            links:
              - {{from: inputs.x, to: outputs.total}}
            """
        ),
        encoding="utf-8",
    )
    return path


# -- PostgreSQL ------------------------------------------------------------------------------------
def test_chat_with_an_unknown_postgres_database_says_to_create_it(tmp_path: Path) -> None:
    require(_postgres_reachable(), f"PostgreSQL is not reachable on {POSTGRES}")
    name = f"nb_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@{POSTGRES}/{name}"  # the usual form, without +asyncpg
    result = chat(_env(NANOBRAIN_HOME=str(tmp_path), NANOBRAIN_DATABASE_URL=url))
    assert_clear_error(
        result, f"has no database {name!r}", f"createdb {name}", f"postgresql+asyncpg://postgres@{POSTGRES}"
    )
    assert "psycopg" not in result.stderr


def test_chat_with_a_refused_login_names_the_user_and_hides_the_password(tmp_path: Path) -> None:
    require(_postgres_reachable(), f"PostgreSQL is not reachable on {POSTGRES}")
    url = f"postgres://nb_nobody:s3cret@{POSTGRES}/test"
    result = chat(_env(NANOBRAIN_HOME=str(tmp_path), NANOBRAIN_DATABASE_URL=url))
    assert_clear_error(result, "refused the login of user 'nb_nobody'", "nb_nobody:***@", "password")
    assert "s3cret" not in result.output


def test_run_with_an_unknown_postgres_database_in_a_store_url(tmp_path: Path) -> None:
    require(_postgres_reachable(), f"PostgreSQL is not reachable on {POSTGRES}")
    name = f"nb_missing_{uuid.uuid4().hex[:8]}"
    result = run(keeper(tmp_path, f"postgresql://postgres@{POSTGRES}/{name}"))
    assert_clear_error(result, f"has no database {name!r}")


# -- SQLite and NANOBRAIN_HOME ---------------------------------------------------------------------
def test_chat_with_nanobrain_home_pointing_at_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    result = chat(_env(NANOBRAIN_HOME=str(home)))
    assert_clear_error(result, f"NANOBRAIN_HOME={home} is not a folder")


def test_chat_with_a_nanobrain_home_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    result = chat(_env(NANOBRAIN_HOME=str(home)))
    assert_clear_error(result, f"cannot create NANOBRAIN_HOME={home}", "writable folder")


def test_chat_with_an_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()  # a folder where the database file should be
    result = chat(_env(NANOBRAIN_HOME=str(tmp_path), NANOBRAIN_DATABASE_URL=f"sqlite:///{folder}"))
    assert_clear_error(result, f"cannot open the SQLite database {folder}", "NANOBRAIN_HOME", "NANOBRAIN_DATABASE_URL")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_chat_with_a_read_only_nanobrain_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    try:
        result = chat(_env(NANOBRAIN_HOME=str(home)))
    finally:
        home.chmod(0o755)
    assert_clear_error(result, f"cannot open the SQLite database {home / 'nanobrain.db'}", "NANOBRAIN_HOME")


def test_run_with_an_sqlite_store_whose_folder_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    database = tmp_path / "file" / "state" / "keeper.db"
    result = run(keeper(tmp_path, f"sqlite:///{database}"))
    assert_clear_error(result, f"cannot create the folder of the SQLite database {database}", "NANOBRAIN_HOME")


# -- files -----------------------------------------------------------------------------------------
def test_run_a_workflow_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    result = run(path)
    assert_clear_error(result, f"{path}:1: not UTF-8 text", "save the file as UTF-8")
