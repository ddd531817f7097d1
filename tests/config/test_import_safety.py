"""A workflow file is code, so loading one must run only what it names: the working directory never
shadows installed modules, checking runs no user code, and an allow-list limits what may be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import check_workflow, load_workflow

H = "tests.config.helpers_for_config"
CHAT = Path(nb.__file__).parent / "workflows" / "chat" / "chat.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def marker_module(folder: Path, name: str, marker: Path, body: str = "") -> None:
    """A module that leaves `marker` behind when its code runs."""
    write(folder / f"{name}.py", f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n{body}")


def problems_of(path: Path, **options: object) -> list[str]:
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path, **options)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def restore_imports() -> Iterator[None]:
    """Loading user code changes sys.path and sys.modules; put them back for the other tests.

    Only the test's own modules (named `nb_...`) are forgotten: NanoBrain's must stay loaded once.
    """
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [name for name in sys.modules if name.startswith("nb_")]:
        del sys.modules[name]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -P: like the `nanobrain` console script, Python itself does not put the working directory first.
    return subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )


# -- the working directory never shadows the standard library or installed packages -------------
def test_loading_the_bundled_chat_in_a_folder_with_sqlite3_py_runs_nothing_from_it(tmp_path: Path) -> None:
    marker = tmp_path / "shadow-ran"
    marker_module(tmp_path, "sqlite3", marker)
    marker_module(tmp_path, "json", marker)
    code = (
        "import sys\n"
        "from nanobrain.config import load_workflow\n"
        "before = list(sys.path)\n"
        f"load_workflow({str(CHAT)!r})\n"
        "import sqlite3, json\n"
        "assert sys.path == before, (before, sys.path)\n"
        "print(sqlite3.__file__)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert str(tmp_path) not in result.stdout


def test_a_config_resolves_its_own_modules_after_installed_ones(tmp_path: Path) -> None:
    marker = tmp_path / "shadow-ran"
    work = tmp_path / "work"
    marker_module(work, "json", marker)  # the working directory has a json.py ...
    project = tmp_path / "project"
    # ... and the config's own module, next to it, uses the real one.
    write(project / "usercode.py", "import json\n\ndef dump(text: str) -> str:\n    return json.dumps({'t': text})\n")
    wf = write(
        project / "wf.yaml",
        """
        name: dumper
        inputs: {text: str}
        outputs: {result: str}
        steps:
          dump: {function: "usercode:dump"}
        links:
          - {from: inputs.text, to: dump.text}
          - {from: dump.result, to: outputs.result}
        """,
    )
    code = (
        "import asyncio, sys\n"
        "from nanobrain.config import load_workflow\n"
        f"wf = load_workflow({str(wf)!r})\n"
        "print(asyncio.run(wf.run(text='hi'))['result'])\n"
        f"assert sys.path[-1] == {str(project)!r}, sys.path\n"
        f"assert {str(work)!r} not in sys.path\n"
    )
    result = run_python(code, work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"t": "hi"}'
    assert not marker.exists()


def test_a_module_of_the_working_directory_is_found_when_nothing_else_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_imports: None
) -> None:
    write(tmp_path / "nb_cwd_only.py", "def upper(text: str) -> str:\n    return text.upper()\n")
    wf = write(
        tmp_path / "flows" / "wf.yaml",
        """
        name: cwd
        inputs: {text: str}
        outputs: {result: str}
        steps:
          upper: {function: "nb_cwd_only:upper"}
        links:
          - {from: inputs.text, to: upper.text}
          - {from: upper.result, to: outputs.result}
        """,
    )
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    load_workflow(wf)
    assert sys.path == [*before, str(tmp_path)]  # appended, after everything installed


# -- checking runs no user code -----------------------------------------------------------------
def user_project(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "user-code-ran"
    marker_module(tmp_path, "nb_user_steps", marker, "def upper(text: str) -> str:\n    return text.upper()\n")
    package = tmp_path / "nb_user_pkg"
    marker_module(package, "__init__", marker)
    write(package / "steps.py", "def upper(text: str) -> str:\n    return text.upper()\n")
    wf = write(
        tmp_path / "wf.yaml",
        """
        name: user
        inputs: {text: str}
        outputs: {result: str, other: str}
        steps:
          upper: {function: "nb_user_steps:upper"}
          other: {function: "nb_user_pkg.steps:upper"}
        links:
          - {from: inputs.text, to: upper.text}
          - {from: inputs.text, to: other.text}
          - {from: upper.result, to: outputs.result}
          - {from: other.result, to: outputs.other}
        """,
    )
    return wf, marker


def test_check_locates_modules_without_running_them_or_their_packages(tmp_path: Path, restore_imports: None) -> None:
    wf, marker = user_project(tmp_path)
    report = check_workflow(wf)
    assert not marker.exists()
    assert (report.name, report.steps, report.inputs, report.outputs) == ("user", 2, 1, 2)
    assert set(report.located) == {"nb_user_steps:upper", "nb_user_pkg.steps:upper"}
    load_workflow(wf)  # importing is what runs the code
    assert marker.exists()


def test_check_reports_missing_modules_and_structure_but_cannot_see_attributes(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: broken
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "nb_no_such_module:upper"}}
          other: {{function: "{H}:no_such_function"}}
          pkg: {{function: "{H}.deeper:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: ghost.text}}
          - {{from: inputs.nope, to: other.text}}
          - {{from: other.result, to: inputs.text}}
          - {{from: pkg.result, to: outputs.result}}
        """,
    )
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)
    problems = [str(p) for p in caught.value.problems]
    assert f"{wf}:5: steps.upper.function: cannot find module 'nb_no_such_module'" in problems[0]
    assert f"{wf}:7: steps.pkg.function:" in problems[1] and "is not a package" in problems[1]
    assert any(p.startswith(f"{wf}:10: links[1]: unknown step 'ghost'") for p in problems), problems
    assert any(p.startswith(f"{wf}:11: links[2]: workflow input 'nope' does not exist") for p in problems), problems
    assert any(p.startswith(f"{wf}:12: links[3]:") and "cannot write into a workflow input" in p for p in problems)
    assert len(problems) == 5, problems  # the missing attribute is found only by importing


def test_check_finds_unbounded_cycles_and_schema_problems(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: loop
        inputs: {{text: str}}
        steps:
          a: {{function: "{H}:upper", timeout: -1}}
          b: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: a.text}}
          - {{from: a.result, to: b.text}}
          - {{from: b.result, to: a.text}}
        """,
    )
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)
    problems = [str(p) for p in caught.value.problems]
    assert any("steps.a.timeout" in p for p in problems), problems
    assert any("cycle without an iteration bound: a -> b -> a" in p for p in problems), problems


def test_the_bundled_chat_checks_without_importing_user_code() -> None:
    import yaml

    report = check_workflow(CHAT)
    declared = yaml.safe_load(CHAT.read_text(encoding="utf-8"))["steps"]
    assert report.name == "chat" and report.steps == len(declared) >= 7


# -- an allow-list of importable modules ---------------------------------------------------------
EVERY_KIND = f"""
name: every_kind
inputs: {{text: str}}
outputs: {{result: str, size: "os:PathLike"}}
steps:
  fn: {{function: "os:getcwd"}}
  cls: {{kind: class, class: "os:PathLike"}}
  cond:
    function: "{H}:upper"
    trigger: {{kind: condition, predicate: "os:path.exists"}}
    retry: {{retry_on: ["os:error"]}}
  chat:
    kind: class
    class: nanobrain.workflows.chat.steps:ChatAgentStep
    options: {{tools: ["os:system"]}}
  agent: {{kind: agent, tools: ["subprocess:run"]}}
  through: {{function: "{H}:nb.core.imports.importlib.import_module"}}
  dunder: {{function: "{H}:upper.__class__.__base__.__subclasses__"}}
  builtins: {{function: "{H}:upper.__builtins__"}}
links:
  - {{from: inputs.text, to: cond.text}}
  - {{from: cond.result, to: outputs.result, transform: "shutil:rmtree"}}
  - {{from: cond.result, to: outputs.result, when: "os:remove"}}
"""


def test_the_allow_list_refuses_every_kind_of_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOBRAIN_ALLOWED_MODULES", "tests.config, json")
    wf = write(tmp_path / "wf.yaml", EVERY_KIND)
    problems = problems_of(wf)
    refused = {p.split(": ", 2)[1] for p in problems if "allow-list" in p}
    assert refused == {
        "outputs.size",
        "steps.fn.function",
        "steps.cls.class",
        "steps.cond.trigger.predicate",
        "steps.cond.retry.retry_on[0]",
        "steps.chat",  # a reference in a class's options, resolved by the class
        "steps.agent.tools[0]",
        "steps.through.function",  # an allowed module's attribute that is another module
        "steps.dunder.function",
        "steps.builtins.function",
        "links[1].transform",
        "links[2].when",
    }, problems
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)  # checking without importing applies the same list
    assert sum("not in the allow-list" in str(p) for p in caught.value.problems) >= 8


def test_the_allow_list_lets_listed_modules_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: allowed
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: outputs.result}}
        """,
    )
    monkeypatch.setenv("NANOBRAIN_ALLOWED_MODULES", "tests.config")
    assert load_workflow(wf).name == "allowed"
    load_workflow(CHAT)  # NanoBrain's ready workflows stay allowed
    # `tests.conf` is not a prefix of `tests.config` at a dot: refused.
    monkeypatch.setenv("NANOBRAIN_ALLOWED_MODULES", "tests.conf")
    assert any("not in the allow-list" in p for p in problems_of(wf))
    # The loader's own list and the environment's both apply.
    monkeypatch.setenv("NANOBRAIN_ALLOWED_MODULES", "tests")
    assert load_workflow(wf, allowed_modules=["tests.config.helpers_for_config"]).name == "allowed"
    assert any("not in the allow-list" in p for p in problems_of(wf, allowed_modules=["json"]))
    monkeypatch.setenv("NANOBRAIN_ALLOWED_MODULES", "")
    assert any("not in the allow-list" in p for p in problems_of(wf))


def test_without_an_allow_list_a_module_that_fails_to_import_is_a_problem(
    tmp_path: Path, restore_imports: None
) -> None:
    write(tmp_path / "nb_broken_module.py", "raise RuntimeError('boom at import')\n")
    wf = write(
        tmp_path / "wf.yaml",
        """
        name: broken
        inputs: {text: str}
        steps:
          upper: {function: "nb_broken_module:upper"}
        links:
          - {from: inputs.text, to: upper.text}
        """,
    )
    problems = problems_of(wf)
    assert len(problems) == 1
    assert "importing module 'nb_broken_module' failed: RuntimeError: boom at import" in problems[0]


def test_check_locates_modules_in_namespace_packages_without_importing_them(tmp_path: Path) -> None:
    write(tmp_path / "nb_ns_top" / "inner" / "steps.py", "raise RuntimeError('must not run')\n")
    wf = write(
        tmp_path / "wf.yaml",
        """
        name: namespaces
        inputs: {text: str}
        steps:
          upper: {function: "nb_ns_top.inner.steps:upper"}
          missing: {function: "nb_ns_top.inner.nothing:upper"}
        links:
          - {from: inputs.text, to: upper.text}
          - {from: inputs.text, to: missing.text}
        """,
    )
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)
    [problem] = caught.value.problems
    assert problem.where == "steps.missing.function"
    assert "cannot find module 'nb_ns_top.inner.nothing'" in problem.message
    assert "nb_ns_top" not in sys.modules
