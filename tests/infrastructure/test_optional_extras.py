"""A missing optional package names the extra that installs it (simulated in a fresh interpreter:
`sys.modules[name] = None` makes `import name` fail as if it were not installed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

MISSING = """
import sys
sys.modules[{module!r}] = None
from nanobrain.optional import MissingExtra
try:
    {action}
except MissingExtra as exc:
    print(isinstance(exc, ImportError), exc.name)
    print(exc)
else:
    print("no error")
"""


def run_without(module: str, setup: str, action: str) -> list[str]:
    code = setup + textwrap.dedent(MISSING).format(module=module, action=action)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("module", "setup", "action", "purpose"),
    [
        (
            "asyncpg",
            "from nanobrain.infrastructure.data.database import Database\n",
            "Database('postgresql://127.0.0.1:5432/test').engine",
            "a PostgreSQL database URL",
        ),
        (
            "redis",
            "from nanobrain.infrastructure.data.kv import open_store\n",
            "open_store('redis://127.0.0.1:6379/0')",
            "a Redis store",
        ),
        (
            "redis",
            "import asyncio\nfrom nanobrain.observability.health import redis_check\n",
            "asyncio.run(redis_check('redis://127.0.0.1:6379/0')())",
            "a Redis health check",
        ),
        (
            "cryptography",
            "from nanobrain.infrastructure.security.encryption import Encryptor\n",
            "Encryptor(bytes(32))",
            "encryption",
        ),
    ],
)
def test_a_missing_package_names_the_extra(module: str, setup: str, action: str, purpose: str) -> None:
    assert run_without(module, setup, action) == [
        f"True {module}",
        f"{purpose} needs the `{module}` package: pip install 'nanobrain[storage]'",
    ]


ANY_ERROR = """
import sys
sys.modules[{module!r}] = None
try:
    {action}
except Exception as exc:
    print(type(exc).__name__, type(exc.__cause__).__name__)
    print(exc)
else:
    print("no error")
"""


@pytest.mark.parametrize(
    ("module", "setup", "action", "purpose", "extra"),
    [
        (
            "distributed",
            "import asyncio\nfrom nanobrain.core.executors import DaskExecutor\n",
            "asyncio.run(DaskExecutor('tcp://127.0.0.1:9').client())",
            "the Dask executor",
            "dask",
        ),
        (
            "mcp",
            "import asyncio\nfrom nanobrain.protocols.mcp.client import MCPToolset\n",
            "asyncio.run(MCPToolset(url='http://127.0.0.1:9/mcp').tools())",
            "an MCP client",
            "mcp",
        ),
        ("mcp", "from nanobrain.protocols.mcp.server import mcp_server\n", "mcp_server([])", "an MCP server", "mcp"),
        (
            "a2a",
            "import asyncio\nfrom nanobrain.protocols.a2a.client import RemoteAgent\n",
            "asyncio.run(RemoteAgent('http://127.0.0.1:9').card())",
            "an A2A client",
            "a2a",
        ),
        (
            "a2a",
            "import nanobrain as nb\nfrom nanobrain.protocols.a2a.server import a2a_routes\n",
            "a2a_routes(nb.Workflow('w'), base_url='http://127.0.0.1:9')",
            "an A2A server",
            "a2a",
        ),
        ("fastapi", "", "import nanobrain.interfaces.http", "the HTTP server", "server"),
        ("fastapi", "", "from nanobrain.interfaces.http.app import create_app", "the HTTP server", "server"),
        ("prometheus_client", "", "from nanobrain.observability import enable_metrics", "metrics", "observability"),
        ("opentelemetry", "", "from nanobrain.observability import enable_tracing", "tracing", "observability"),
    ],
)
def test_every_optional_package_names_its_extra(module: str, setup: str, action: str, purpose: str, extra: str) -> None:
    assert run_without(module, setup, action) == [
        f"True {module}",
        f"{purpose} needs the `{module}` package: pip install 'nanobrain[{extra}]'",
    ]


@pytest.mark.parametrize(
    ("module", "setup", "action", "purpose"),
    [
        (
            "openai",
            "from nanobrain.llm.openai_compat import OpenAICompatibleProvider\n",
            "OpenAICompatibleProvider('m', base_url='http://127.0.0.1:9/v1')._get_client()",
            "the OpenAI-compatible provider",
        ),
        (
            "anthropic",
            "from nanobrain.llm.anthropic_provider import AnthropicProvider\n",
            "AnthropicProvider('m', api_key='k')._get_client()",
            "the Anthropic provider",
        ),
    ],
)
def test_a_provider_without_its_sdk_is_a_model_not_configured(
    module: str, setup: str, action: str, purpose: str
) -> None:
    # A provider's missing SDK is one more way a model is not usable (the server answers it like a missing key).
    code = setup + textwrap.dedent(ANY_ERROR).format(module=module, action=action)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ModelNotConfigured MissingExtra",
        f"{module}: {purpose} needs the `{module}` package: pip install 'nanobrain[{module}]'",
    ]


def test_an_installed_package_is_returned() -> None:
    from nanobrain.optional import require

    assert require("json", extra="none", purpose="a test").dumps([1]) == "[1]"
