"""Module-level functions for the executor tests.

Spawned processes and Dask workers import this module by name to unpickle the functions, so
they must live at module level in an importable module (pytest puts tests/core on sys.path and
spawned children inherit it).
"""

from __future__ import annotations

import asyncio
import os
import threading

from nanobrain import step


def where() -> dict:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


def square(x: int) -> dict:
    return {"value": x * x, **where()}


async def async_square(x: int) -> dict:
    await asyncio.sleep(0)
    return {"value": x * x, "loop": id(asyncio.get_running_loop()), **where()}


def fail(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


@step
def cube(x: int) -> int:
    """Decorated with @step: the module attribute is the step, not the function."""
    return x**3
