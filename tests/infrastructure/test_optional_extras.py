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


def test_an_installed_package_is_returned() -> None:
    from nanobrain.optional import require

    assert require("json", extra="none", purpose="a test").dumps([1]) == "[1]"
