"""Where NanoBrain keeps its files: `NANOBRAIN_HOME`, default `~/.nanobrain`.

Everything there is private (conversations, keys): the folder is created 0700 and the files
NanoBrain creates 0600, whatever the umask. A folder that already exists with wider access is
tightened when it is the default `~/.nanobrain` (NanoBrain's own folder); a folder the user named
in NANOBRAIN_HOME may be shared on purpose (a project folder, say), so it is left as it is and a
warning says how to close it. Files NanoBrain creates inside are owner-only either way.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ...core.errors import NanoBrainError

log = logging.getLogger("nanobrain.home")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_warned: set[Path] = set()


class HomeError(NanoBrainError):
    """The NanoBrain home folder cannot be used (not a folder, or cannot be created)."""


def nanobrain_home() -> Path:
    configured = os.environ.get("NANOBRAIN_HOME")
    home = Path(configured or Path.home() / ".nanobrain").expanduser()
    where = f"NANOBRAIN_HOME={configured}" if configured else f"the home folder {home} (NANOBRAIN_HOME is unset)"
    if home.exists() and not home.is_dir():
        raise HomeError(f"{where} is not a folder: set NANOBRAIN_HOME to a folder (it is created if missing)")
    existed = home.is_dir()
    try:
        home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        if not existed:
            home.chmod(PRIVATE_DIR)  # mkdir's mode is reduced by the umask; be exact
    except OSError as exc:
        raise HomeError(
            f"cannot create {where}: {exc.strerror or exc}. Set NANOBRAIN_HOME to a writable folder"
        ) from None
    if existed:
        _keep_private(home, ours=not configured)
    return home


def _keep_private(home: Path, *, ours: bool) -> None:
    """Tighten NanoBrain's own folder; warn (once) about a user-chosen one that others can read."""
    mode = stat.S_IMODE(home.stat().st_mode)
    if not mode & 0o077:
        return
    if ours:
        try:
            home.chmod(mode & ~0o077)
            return
        except OSError:
            pass  # not the owner: say so below
    if home not in _warned:
        _warned.add(home)
        log.warning(
            "the NanoBrain home folder %s is readable by other users (mode %s); it holds conversations "
            "and keys: run `chmod 700 %s`, or set NANOBRAIN_HOME to a private folder",
            home,
            oct(mode),
            home,
        )


def create_private_file(path: Path) -> bool:
    """Create `path` empty and owner-only (0600) if it does not exist; True when it was created.

    A file created this way keeps its mode when it is written later, and SQLite gives the `-wal`
    and `-shm` files of a database the mode of the database file.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits away from the owner
    finally:
        os.close(fd)
    return True


def is_in_home(path: Path) -> bool:
    """Whether `path` lies inside the NanoBrain home folder (without creating the folder)."""
    configured = os.environ.get("NANOBRAIN_HOME")
    home = Path(configured or Path.home() / ".nanobrain").expanduser()
    try:
        return path.resolve().is_relative_to(home.resolve())
    except OSError:
        return False


def tighten_file(path: Path) -> None:
    """Make an existing file owner-only (for files NanoBrain owns, written by older versions)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & ~0o077)
    except OSError:
        pass  # absent, or not ours to change: the database works either way


def default_database_url() -> str:
    """`NANOBRAIN_DATABASE_URL`, or an SQLite file under the home folder."""
    return os.environ.get("NANOBRAIN_DATABASE_URL") or f"sqlite+aiosqlite:///{nanobrain_home() / 'nanobrain.db'}"
