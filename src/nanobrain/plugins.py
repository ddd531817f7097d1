"""Plugins: installed packages that extend NanoBrain through the `nanobrain.plugins` entry points.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."nanobrain.plugins"]
    shout = "nanobrain_shout"            # a module, or "package.module:register" (called with no arguments)

and registers what it adds when loaded, for example a step kind with
`nanobrain.config.registry.register_step_kind`. Plugins are loaded once per process, the first
time a workflow names a step kind NanoBrain does not know (or by `load_plugins()`). A plugin that
fails to load is recorded with its name and error; the others load regardless.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

GROUP = "nanobrain.plugins"


@dataclass(frozen=True)
class PluginInfo:
    """One entry point of the `nanobrain.plugins` group, and how loading it went."""

    name: str
    value: str  # what the entry point names: "module" or "module:attribute"
    distribution: str  # "package 1.2.3", or "" when unknown
    error: str | None = None  # "ModuleNotFoundError: No module named 'x'" when it failed to load

    @property
    def ok(self) -> bool:
        return self.error is None


_lock = threading.Lock()
_loaded: list[PluginInfo] | None = None


def discover() -> list[PluginInfo]:
    """Load every installed plugin now, each on its own (one's failure does not stop the others)."""
    from importlib.metadata import entry_points

    found: list[PluginInfo] = []
    seen: set[tuple[str, str]] = set()
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        if (point.name, point.value) in seen:
            continue  # the same distribution visible twice on sys.path
        seen.add((point.name, point.value))
        dist = getattr(point, "dist", None)
        where = f"{dist.metadata['Name']} {dist.version}" if dist is not None else ""
        try:
            target = point.load()
            if callable(target):
                target()
        except Exception as exc:  # a plugin's own failure: report it, keep loading the rest
            found.append(PluginInfo(point.name, point.value, where, f"{type(exc).__name__}: {exc}"))
        else:
            found.append(PluginInfo(point.name, point.value, where))
    return found


def load_plugins(*, refresh: bool = False) -> list[PluginInfo]:
    """The plugins of this process, loaded on the first call (again with `refresh`)."""
    global _loaded
    with _lock:
        if _loaded is None or refresh:
            _loaded = discover()
        return _loaded
