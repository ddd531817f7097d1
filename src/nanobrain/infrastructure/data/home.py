"""Where NanoBrain keeps its files: `NANOBRAIN_HOME`, default `~/.nanobrain`."""

from __future__ import annotations

import os
from pathlib import Path

from ...core.errors import NanoBrainError


class HomeError(NanoBrainError):
    """The NanoBrain home folder cannot be used (not a folder, or cannot be created)."""


def nanobrain_home() -> Path:
    configured = os.environ.get("NANOBRAIN_HOME")
    home = Path(configured or Path.home() / ".nanobrain").expanduser()
    where = f"NANOBRAIN_HOME={configured}" if configured else f"the home folder {home} (NANOBRAIN_HOME is unset)"
    if home.exists() and not home.is_dir():
        raise HomeError(f"{where} is not a folder: set NANOBRAIN_HOME to a folder (it is created if missing)")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(
            f"cannot create {where}: {exc.strerror or exc}. Set NANOBRAIN_HOME to a writable folder"
        ) from None
    return home


def default_database_url() -> str:
    """`NANOBRAIN_DATABASE_URL`, or an SQLite file under the home folder."""
    return os.environ.get("NANOBRAIN_DATABASE_URL") or f"sqlite+aiosqlite:///{nanobrain_home() / 'nanobrain.db'}"
