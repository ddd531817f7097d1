"""`nanobrain plugins list`: the installed plugins (`nanobrain.plugins` entry points) and whether they load."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

plugins_app = typer.Typer(help="Plugins: installed packages that add step kinds and more.", no_args_is_help=True)


@plugins_app.command("list")
def list_plugins() -> None:
    """Load every installed plugin and show it; exits 1 when one failed to load (the others still load)."""
    from ..plugins import GROUP, load_plugins

    plugins = load_plugins()
    out = Console(highlight=False, soft_wrap=True)
    if not plugins:
        Console(stderr=True, highlight=False).print(f"no plugins installed (entry point group {GROUP!r})")
        return
    # One line per plugin (not a table): errors stay whole, whatever the terminal's width.
    for plugin in plugins:
        status = Text("loaded", style="green") if plugin.ok else Text(f"failed: {plugin.error}", style="red")
        package = f" ({plugin.distribution})" if plugin.distribution else ""
        out.print(Text.assemble(f"{plugin.name} = {plugin.value}{package}: ", status))
    if not all(plugin.ok for plugin in plugins):
        raise typer.Exit(1)
