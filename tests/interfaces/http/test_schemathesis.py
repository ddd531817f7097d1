"""schemathesis against /openapi.json: no 5xx and no response that breaks the schema, with a key and without."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.interfaces.http.conftest import LiveServer, start_server

from nanobrain.llm import ChatRequest, ScriptedModel

pytest.importorskip("schemathesis", reason="the API fuzzing tests need schemathesis (test extra)")

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method"
)


def reply(request: ChatRequest) -> str:
    return f"you said {len(request.messages[-1].content)} characters"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("fuzz"), ScriptedModel(respond=reply))
    yield live
    live.close()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", None])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    fuzzed: LiveServer, role: str | None, tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{fuzzed.url}/openapi.json",
        "--checks", CHECKS, "--seed", "1", "--workers", "1", "--suppress-health-check", "all",
        "--request-timeout", "20", "--no-shrink",
    ]  # fmt: skip
    if role is not None:
        command += ["--header", f"Authorization: Bearer {fuzzed.keys[role]}"]  # type: ignore[attr-defined]
        command += ["--phases", "examples,fuzzing", "--max-examples", "12"]
    else:  # every answer is a 401: a little fuzzing shows they all conform
        command += ["--phases", "fuzzing", "--max-examples", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout
