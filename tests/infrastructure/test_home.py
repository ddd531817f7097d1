"""Files under NANOBRAIN_HOME are private: the folder 0700, the database and its -wal/-shm 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.export import ExportManager
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.infrastructure.data.home import nanobrain_home
from nanobrain.infrastructure.security.encryption import Encryptor, generate_key
from nanobrain.llm.messages import Message


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The usual umask, under which files are created world-readable unless we say otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NANOBRAIN_HOME unset, so the home is ~/.nanobrain under a temporary HOME."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NANOBRAIN_HOME", raising=False)
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    return tmp_path / ".nanobrain"


async def _write_history(db: Database) -> dict[str, int]:
    """Append one message; the modes of the database's files while its connection is open (WAL mode)."""
    history = ConversationHistory(db)
    await history.append("s", Message.user("private words"))
    path = Path(db.url.split("///", 1)[1])
    files = (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    modes = {p.name: mode(p) for p in files if p.exists()}
    await history.aclose()
    return modes


async def test_the_default_home_and_database_are_created_owner_only(default_home: Path) -> None:
    assert nanobrain_home() == default_home
    assert mode(default_home) == 0o700
    async with Database() as db:
        modes = await _write_history(db)
    assert modes == {"nanobrain.db": 0o600, "nanobrain.db-wal": 0o600, "nanobrain.db-shm": 0o600}


def _as_an_older_version_left_it(home: Path) -> None:
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "nanobrain.db").touch()
    (home / "nanobrain.db").chmod(0o644)


async def test_an_older_world_readable_default_home_is_tightened(default_home: Path) -> None:
    _as_an_older_version_left_it(default_home)
    async with Database() as db:
        modes = await _write_history(db)
    assert mode(default_home) == 0o700
    assert modes == {"nanobrain.db": 0o600, "nanobrain.db-wal": 0o600, "nanobrain.db-shm": 0o600}


async def test_a_chosen_home_others_can_read_is_left_alone_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "project"
    shared.mkdir()
    shared.chmod(0o755)
    monkeypatch.setenv("NANOBRAIN_HOME", str(shared))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="nanobrain.home"):
        assert nanobrain_home() == shared
        nanobrain_home()
    assert mode(shared) == 0o755  # the user's folder: not ours to change
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and f"chmod 700 {shared}" in warnings[0]
    async with Database() as db:
        modes = await _write_history(db)
    assert modes == {"nanobrain.db": 0o600, "nanobrain.db-wal": 0o600, "nanobrain.db-shm": 0o600}  # ours: private


async def test_a_new_home_folder_named_in_the_environment_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOBRAIN_HOME", str(tmp_path / "new" / "home"))
    home = nanobrain_home()
    assert mode(home) == 0o700


async def test_a_new_database_anywhere_is_owner_only_and_an_existing_one_elsewhere_keeps_its_mode(
    tmp_path: Path, default_home: Path
) -> None:
    async with Database(f"sqlite:///{tmp_path / 'mine.db'}") as db:
        modes = await _write_history(db)
    assert modes == {"mine.db": 0o600, "mine.db-wal": 0o600, "mine.db-shm": 0o600}
    theirs = tmp_path / "theirs.db"
    theirs.touch()
    theirs.chmod(0o640)
    async with Database(f"sqlite:///{theirs}") as db:
        await _write_history(db)
    assert mode(theirs) == 0o640  # a file the user keeps outside the home is the user's business


async def test_exports_and_key_files_are_owner_only(default_home: Path) -> None:
    home = nanobrain_home()
    async with Database() as db:
        history = ConversationHistory(db)
        await history.append("s", Message.user("private words"))
        target = home / "exports" / "all.json"
        assert await ExportManager(history).export(None, target) == 1
        await history.aclose()
    assert mode(target.parent) == 0o700 and mode(target) == 0o600

    key_file = home / "keys"
    key_file.write_text("old\n")
    key_file.chmod(0o644)
    Encryptor.write_key_file(key_file, [generate_key()])
    assert mode(key_file) == 0o600
