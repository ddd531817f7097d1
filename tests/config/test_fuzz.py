"""Property-based fuzzing of the loader: whatever the bytes, loading (and checking) ends in a workflow
or a ConfigError whose every problem is located, within a time and memory bound; never anything else.

Three sources of input: random bytes, valid documents mutated at random (YAML tokens, anchors,
aliases, tabs, NUL bytes inserted; ranges deleted; lines repeated), and generated documents shaped
like workflows. Bounded `max_examples` keep it to a few seconds in CI.
"""

from __future__ import annotations

import textwrap
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanobrain as nb
from nanobrain.config import check_workflow, load_workflow

H = "tests.config.helpers_for_config"
SECONDS = 5.0
MEMORY = 64 * 1024 * 1024

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

SEEDS = [
    textwrap.dedent(text).lstrip()
    for text in (
        f"""
        name: shout
        inputs: {{text: str}}
        outputs: {{result: str, size: int}}
        steps:
          upper: {{function: "{H}:upper", timeout: 5, retry: {{attempts: 2, retry_on: [ValueError]}}}}
          exclaim: {{function: "{H}:exclaim", trigger: on_update}}
          size: {{function: "{H}:length", executor: thread}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: exclaim.text, when: "{H}:is_long"}}
          - {{from: exclaim.result, to: outputs.result}}
          - {{from: upper.result, to: size.text}}
          - {{from: size.result, to: outputs.size}}
        """,
        f"""
        name: nested
        description: ${{NB_FUZZ_UNSET:-a default}}
        inputs:
          text: {{type: str, default: hi}}
        outputs: {{result: str}}
        steps:
          inner:
            kind: workflow
            workflow:
              name: inner
              inputs: {{text: str}}
              outputs: {{result: str}}
              steps:
                repeat: &repeat
                  kind: class
                  class: "{H}:Repeat"
                  options: {{times: 3}}
              links:
                - {{from: inputs.text, to: repeat.text}}
                - {{from: repeat.result, to: outputs.result, max_iterations: 2}}
          again: {{<<: *repeat, timeout: 1.5}}
        links:
          - {{from: inputs.text, to: inner.text}}
          - {{from: inner.result, to: again.text}}
          - {{from: again.result, to: outputs.result}}
        """,
    )
]

TOKENS = [
    "&a ", "*a", "<<: *a", "[", "]", "{", "}", ": ", "- ", "? ", "\n", "\n  ", "\t", "\x00", "'", '"', "#",
    "!!python/object:os.system", "!!binary", "!!set", "---\n", "...\n", "%YAML 1.1\n", "${NB_FUZZ_UNSET}",
    "${PATH}", "1" * 5000, "0x" + "f" * 5000, "!!float x", "!!int", "2020-02-30",
    "kind: workflow", "file: other.yaml", "file: /etc/passwd", "function: os:getcwd",
    "max_iterations: 0", "steps.x", "inputs.", "\u2028", "\ufeff", "\udcff", "~", "null", "1e999", "-.inf",
]


def check(path: Path) -> None:
    """Load and check `path`: a workflow or a located ConfigError, within the bounds."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        for load in (load_workflow, check_workflow):
            try:
                load(path)
            except nb.ConfigError as exc:
                assert exc.problems
                for problem in exc.problems:
                    assert problem.file is not None, problem
                    assert problem.line is not None or problem.where, problem
                    assert problem.message, problem
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < SECONDS, elapsed
    assert peak < MEMORY, peak


@pytest.fixture
def document(tmp_path: Path) -> Path:
    # A nested file the mutations may point at, next to the document.
    (tmp_path / "other.yaml").write_text(SEEDS[0])
    return tmp_path / "fuzz.yaml"


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(document: Path, data: bytes) -> None:
    document.write_bytes(data)
    check(document)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "repeat", "text"]))
        if action == "insert":
            text = text[:position] + draw(st.sampled_from(TOKENS)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 40)) :]
        elif action == "repeat":
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines[i:i] = [lines[i]] * draw(st.integers(1, 3))
                text = "".join(lines)
        else:
            text = text[:position] + draw(st.text(max_size=8)) + text[position:]
    return text


@FUZZ
@given(text=mutated())
def test_mutated_documents(document: Path, text: str) -> None:
    document.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(document)


NAMES = st.sampled_from(["a", "b", "upper", "inputs", "outputs", "text", "result", "x.y", ""])
REFERENCES = st.sampled_from(
    [f"{H}:upper", f"{H}:length", f"{H}:Repeat", f"{H}:not_callable", f"{H}:nope", "nb_fuzz_missing:f", "x", ":", ""]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=12))
ENDPOINTS = st.builds(lambda a, b: f"{a}.{b}", NAMES, NAMES) | NAMES
VALUES: Any = st.recursive(
    SCALARS | REFERENCES | ENDPOINTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | NAMES, inner, max_size=4),
    max_leaves=20,
)
STEP = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["function", "class", "workflow", "nope"]) | SCALARS,
        "function": REFERENCES | VALUES,
        "class": REFERENCES,
        "options": st.dictionaries(st.sampled_from(["times", "name", "x"]), VALUES, max_size=2),
        "timeout": SCALARS,
        "trigger": st.sampled_from(["on_update", "manual", "all", "bad"]) | VALUES,
        "retry": VALUES,
        "executor": st.sampled_from(["inprocess", "thread", "nope"]) | VALUES,
        "workflow": VALUES,
        "file": st.sampled_from(["other.yaml", "fuzz.yaml", "../x.yaml", "/dev/zero", "a\x00.yaml"]) | st.text(),
    },
)
UNIT = st.fixed_dictionaries(
    {"kind": st.sampled_from(["memory", "string", "stream", "file", "nope"])},
    optional={
        "type": st.sampled_from(["str", "int", "list[str]", "nope[", f"{H}:Repeat", "os:PathLike"]),
        "path": st.sampled_from(["/dev/zero", "other.yaml", "missing.json", "."]),
        "format": st.sampled_from(["json", "text", "bytes", "x"]),
        "default": SCALARS,
        "maxsize": SCALARS,
    },
)
WORKFLOW = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8) | SCALARS,
        "inputs": st.dictionaries(NAMES, st.sampled_from(["str", "int", "list[str]", "nope[", f"{H}:Repeat"]) | UNIT),
        "outputs": st.dictionaries(NAMES, st.sampled_from(["str", "int"]) | VALUES, max_size=3),
        "steps": st.dictionaries(NAMES, STEP | VALUES, max_size=4),
        "links": st.lists(
            st.fixed_dictionaries(
                {"from": ENDPOINTS, "to": ENDPOINTS},
                optional={"transform": REFERENCES, "when": REFERENCES, "maxsize": SCALARS, "max_iterations": SCALARS},
            )
            | VALUES,
            max_size=5,
        ),
        "executors": VALUES,
        "extra": VALUES,
    },
)


@FUZZ
@given(data=WORKFLOW | VALUES)
def test_generated_documents(document: Path, data: Any) -> None:
    document.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    check(document)


def test_the_seeds_are_valid(document: Path) -> None:
    """The mutations start from working documents (so they explore near-valid input)."""
    for seed in SEEDS:
        document.write_text(seed)
        assert isinstance(load_workflow(document), nb.Workflow)
