"""Module-level functions for map tests (a process pool needs importable functions)."""

from __future__ import annotations

import os


def cube(x: int) -> int:
    return x * x * x


def pid_of(x: int) -> int:
    return os.getpid()
