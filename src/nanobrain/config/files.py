"""Reading files that a user names: regular files only, never more than a size limit.

`/dev/zero` would be read until memory runs out and a FIFO would block forever, so both are
refused before a byte is read, with a message that says what the path is instead.
"""

from __future__ import annotations

import os
import stat

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest workflow document read: 4 MiB (real ones are a few KiB; loading is linear, and this
keeps the worst case to seconds)."""
MAX_INPUT_BYTES = 64 * 1024 * 1024
"""The largest `--input-json @file` read: 64 MiB (JSON is parsed in C)."""


class UnreadableFile(Exception):
    """A file could not be read; the message says why (without its content)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def special_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` must not be read (it exists and is not a regular file), or None."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # missing (a unit creates it), or a name the system refuses
        return None
    return None if stat.S_ISREG(info.st_mode) else f"{_kind(info.st_mode)}, not a regular file"


def read_bytes(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file `path`; UnreadableFile if it is missing, not a regular file,
    unreadable, or larger than `max_bytes`."""
    try:
        info = os.stat(path)  # stat does not open: a FIFO cannot block us here
    except FileNotFoundError:
        raise UnreadableFile("file not found") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"{_kind(info.st_mode)}, not a regular file")
    _check_size(info.st_size, max_bytes)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, opening must not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(f"cannot read file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode):
            raise UnreadableFile(f"{_kind(opened.st_mode)}, not a regular file")
        try:
            data = handle.read(max_bytes + 1)  # one byte more tells a file that grew past the limit
        except OSError as exc:
            raise UnreadableFile(f"cannot read file: {exc.strerror or exc}") from None
    _check_size(len(data), max_bytes)
    return data


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise UnreadableFile(f"file is larger than the limit of {_size(max_bytes)} ({_size(size)} or more)")


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
