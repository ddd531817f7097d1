"""Where NanoBrain keeps its files: `NANOBRAIN_HOME`, default `~/.nanobrain`."""

from __future__ import annotations

import os
from pathlib import Path


def nanobrain_home() -> Path:
    home = Path(os.environ.get("NANOBRAIN_HOME") or Path.home() / ".nanobrain").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_database_url() -> str:
    """`NANOBRAIN_DATABASE_URL`, or an SQLite file under the home folder."""
    return os.environ.get("NANOBRAIN_DATABASE_URL") or f"sqlite+aiosqlite:///{nanobrain_home() / 'nanobrain.db'}"
