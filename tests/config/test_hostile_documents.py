"""Documents written to hurt: secrets must not be echoed, other files not read, and no input may
hang the loader, exhaust memory, crash it with RecursionError or make it slow down quadratically."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import check_workflow, load_workflow
from nanobrain.config.files import MAX_FILE_BYTES

H = "tests.config.helpers_for_config"
SECRET = "s3cr3t-value-from-the-environment"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def load_error(path: Path, **options: object) -> nb.ConfigError:
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path, **options)  # type: ignore[arg-type]
    return caught.value


# -- values from the environment are never shown --------------------------------------------------
def test_a_value_from_the_environment_is_shown_as_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NB_TEST_SECRET", SECRET)
    monkeypatch.setenv("NB_TEST_SHORT", "x1")
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: leaky
        inputs: {{text: str}}
        outputs: {{result: str}}
        executors:
          pool: {{kind: thread, max_workers: "${{NB_TEST_SECRET}}"}}
        steps:
          upper: {{function: "{H}:upper", timeout: "${{NB_TEST_SECRET}}", executor: "${{NB_TEST_SECRET}}"}}
          other: {{function: "prefix-${{NB_TEST_SECRET}}", concurrency: "${{NB_TEST_SHORT}}"}}
          third: {{function: "{H}:upper", executor: "${{NB_TEST_SECRET}}"}}
          fourth: {{function: "{H}:upper", executor: "redis://:written-password@127.0.0.1/0"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: outputs.result}}
          - {{from: "${{NB_TEST_SECRET}}.x", to: outputs.result}}
        """,
    )
    error = load_error(wf)
    text = str(error) + "".join(f"{p.where}{p.message}" for p in error.problems)
    assert SECRET not in text
    assert "x1" not in text.replace("max_workers", "")
    assert "'${NB_TEST_SECRET}'" in text
    assert "'${NB_TEST_SHORT}'" in text
    assert "written-password" not in text and "redis://:***@127.0.0.1/0" in text  # masked like URLs everywhere
    assert len(error.problems) >= 4, error.problems
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)
    assert SECRET not in str(caught.value) and "'${NB_TEST_SECRET}'" in str(caught.value)


# -- nested files: only workflow files, only inside the config's folder --------------------------
def nested(tmp_path: Path, file: str) -> Path:
    return write(
        tmp_path / "project" / "wf.yaml",
        f"""
        name: outer
        inputs: {{text: str}}
        steps:
          sub: {{kind: workflow, file: "{file}"}}
        links:
          - {{from: inputs.text, to: sub.text}}
        """,
    )


@pytest.mark.parametrize("target", ["/etc/passwd", "/etc/shadow", "/dev/zero"])
def test_a_nested_file_that_is_not_a_workflow_file_is_refused_unread(tmp_path: Path, target: str) -> None:
    error = load_error(nested(tmp_path, target))
    assert len(error.problems) == 1
    assert "is not a workflow file" in error.problems[0].message
    assert "x:0:0" not in str(error) and "/bin/" not in str(error)


def test_a_nested_file_outside_the_folder_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = write(
        tmp_path / "shared" / "inner.yaml",
        f"""
        name: inner
        inputs: {{text: str}}
        steps:
          upper: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
        """,
    )
    wf = nested(tmp_path, "../shared/inner.yaml")
    error = load_error(wf)
    assert len(error.problems) == 1 and "outside the workflow's folder" in error.problems[0].message
    assert load_workflow(wf, allowed_dirs=[shared.parent]).steps["sub"].name == "sub"
    monkeypatch.setenv("NANOBRAIN_ALLOWED_DIRS", f"/nonexistent{os.pathsep}{shared.parent}")
    assert check_workflow(wf).steps == 1
    monkeypatch.delenv("NANOBRAIN_ALLOWED_DIRS")
    # A link inside the folder that points out of it is outside too.
    (tmp_path / "project" / "link.yaml").symlink_to(shared)
    assert "outside the workflow's folder" in load_error(nested(tmp_path, "link.yaml")).problems[0].message


def test_a_nested_yaml_file_that_is_no_workflow_stops_at_the_first_problem_without_its_content(
    tmp_path: Path,
) -> None:
    write(tmp_path / "project" / "notes.yaml", "root:x:0:0:root:/root:/bin/bash\nprivate line two\n")
    error = load_error(nested(tmp_path, "notes.yaml"))
    assert len(error.problems) == 1
    assert "is not a workflow document" in error.problems[0].message
    assert "x:0:0" not in str(error) and "private" not in str(error)
    (tmp_path / "project" / "broken.yaml").write_text("a: [private, unclosed\n")
    error = load_error(nested(tmp_path, "broken.yaml"))
    assert len(error.problems) == 1 and "private" not in str(error)
    assert "YAML syntax error" in error.problems[0].message


# -- only regular files, within a size limit ------------------------------------------------------
def test_special_files_are_refused_before_reading(tmp_path: Path) -> None:
    started = time.monotonic()
    assert "a device" in load_error(Path("/dev/zero")).problems[0].message
    assert "a directory" in load_error(tmp_path).problems[0].message
    assert time.monotonic() - started < 5


def test_a_fifo_does_not_hang_the_loader(tmp_path: Path) -> None:
    fifo = tmp_path / "wf.yaml"
    os.mkfifo(fifo)
    sub = tmp_path / "outer.yaml"
    sub.write_text("name: o\nsteps:\n  s: {kind: workflow, file: wf.yaml}\n")

    def unblock() -> None:  # if the loader opened the FIFO, give it an end so that the test fails, not hangs
        with open(fifo, "w"):
            pass

    watchdog = threading.Timer(10, unblock)
    watchdog.start()
    try:
        started = time.monotonic()
        assert "named pipe" in load_error(fifo).problems[0].message
        assert "named pipe" in load_error(sub).problems[0].message
        assert time.monotonic() - started < 5
    finally:
        watchdog.cancel()


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    wf = tmp_path / "big.yaml"
    wf.write_text("name: big\ndescription: " + "x" * 2000 + "\n")
    problem = load_error(wf, max_bytes=1000).problems[0]
    assert "larger than the limit of 1000 bytes" in problem.message and problem.file == str(wf)
    assert MAX_FILE_BYTES >= 1024 * 1024


# -- bounded parsing --------------------------------------------------------------------------------
def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "name: laughs\ndescription: ok\n" + "\n".join(lines) + "\n"


def test_an_alias_bomb_is_a_located_error_at_once(tmp_path: Path) -> None:
    wf = write(tmp_path / "wf.yaml", billion_laughs())
    started = time.process_time()  # CPU time, so that a busy machine does not fail the test
    error = load_error(wf)
    # About 0.2 s on a quiet machine; the bound is generous (a shared CPU's cache misses count
    # as CPU time too), while an unbounded expansion would take minutes and gigabytes.
    assert time.process_time() - started < 5.0
    [problem] = error.problems
    assert "aliases expand this document" in problem.message
    assert problem.file == str(wf) and problem.line is not None and problem.line > 2


def test_reasonable_aliases_still_work(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: anchors
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: &common {{function: "{H}:upper", timeout: 5}}
          again: {{<<: *common}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: again.text}}
          - {{from: again.result, to: outputs.result}}
        """,
    )
    assert load_workflow(wf).steps["again"].timeout == 5


@pytest.mark.parametrize(
    "text",
    [
        "name: deep\ndescription: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "name: deep\nsteps: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
        "name: deep\nsteps:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 1_500)),
        "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 2_000)),
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "alias-chain"],
)
def test_deep_nesting_is_a_located_error_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    wf = tmp_path / "deep.yaml"
    wf.write_text(text)
    [problem] = load_error(wf).problems
    assert "nested more than 100 levels deep" in problem.message or "nesting depth" in problem.message
    assert problem.file == str(wf) and problem.line is not None


def test_a_nul_byte_is_reported_on_its_line(tmp_path: Path) -> None:
    wf = tmp_path / "nul.yaml"
    wf.write_text("name: nul\ndescription: fine\nsteps: {}\nlinks: []\nbad: a\x00b\n")
    [problem] = load_error(wf).problems
    assert problem.line == 5
    assert "0x0000" in problem.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1" * 5_000, "cannot read this int"),
        ("!!float xyz", "cannot read this float"),
        ("2020-02-30", "cannot read this timestamp"),
        ("0x" + "f" * 5_000, "int too long to show"),
    ],
    ids=["digits", "float-tag", "date", "hex"],
)
def test_scalars_python_cannot_read_are_located_errors(tmp_path: Path, value: str, expected: str) -> None:
    wf = tmp_path / "scalar.yaml"
    wf.write_text(f"name: scalar\nsteps:\n  a: {{function: \"{H}:upper\", timeout: {value}}}\n")
    for load in (load_workflow, check_workflow):
        with pytest.raises(nb.ConfigError) as caught:
            load(wf)
        [problem] = caught.value.problems
        assert expected in problem.message and problem.line == 3


def test_an_empty_document_is_located(tmp_path: Path) -> None:
    wf = tmp_path / "empty.yaml"
    wf.write_text("")
    [problem] = load_error(wf).problems
    assert (problem.file, problem.line) == (str(wf), 1)


# -- many problems: linear work, a short message -----------------------------------------------------
def chain_document(steps: int, *, broken: bool) -> str:
    option = ", timeout: -1" if broken else ""
    lines = ["name: chain", "inputs: {x: int}", "outputs: {x: int}", "steps:"]
    lines += [f'  s{i}: {{function: "{H}:double"{option}}}' for i in range(steps)]
    lines += ["links:", "  - {from: inputs.x, to: s0.value}"]
    lines += [f"  - {{from: s{i - 1}.result, to: s{i}.value}}" for i in range(1, steps)]
    lines += [f"  - {{from: s{steps - 1}.result, to: outputs.x}}"]
    return "\n".join(lines) + "\n"


async def test_a_chain_of_thousands_of_steps_loads_and_runs(tmp_path: Path) -> None:
    wf = tmp_path / "chain.yaml"
    wf.write_text(chain_document(3_000, broken=False))
    workflow = load_workflow(wf)
    assert len(workflow.steps) == 3_000
    assert check_workflow(wf).steps == 3_000
    assert await workflow.run(x=1) == {"x": 2**3_000}


def test_loading_time_grows_linearly_and_the_message_stays_short(tmp_path: Path) -> None:
    def seconds(steps: int) -> tuple[float, nb.ConfigError]:
        wf = tmp_path / f"broken{steps}.yaml"
        wf.write_text(chain_document(steps, broken=True))
        started = time.process_time()  # CPU time: other processes on the machine do not count
        error = load_error(wf)
        return time.process_time() - started, error

    seconds(500)  # warm up imports and caches
    small, _ = seconds(2_000)
    large, error = seconds(8_000)
    assert len(error.problems) == 8_000
    # Four times the steps: about four times the time (quadratic work would be sixteen).
    assert large < 8 * small + 0.5, (small, large)
    assert len(str(error).splitlines()) <= 52
    assert str(error).endswith("... and 7950 more")


def test_one_malformed_link_endpoint_does_not_hide_the_other_link_problems(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        f"""
        name: links
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          a: {{function: "{H}:upper"}}
          b: {{function: "{H}:exclaim"}}
        links:
          - {{from: inputs.text, to: a.text}}
          - {{from: "nodot", to: b.text}}
          - {{from: a.result, to: b.nope}}
          - {{from: ".x", to: outputs.result}}
          - {{from: b.result, to: outputs.nope}}
        """,
    )
    problems = [str(p) for p in load_error(wf).problems]
    assert any(p.startswith(f"{wf}:9: links[1]:") and "'nodot'" in p for p in problems), problems
    assert any(p.startswith(f"{wf}:10: links[2]:") and "'nope' does not exist" in p for p in problems), problems
    assert any(p.startswith(f"{wf}:11: links[3]:") and "'.x'" in p for p in problems), problems
    assert any(p.startswith(f"{wf}:12: links[4]:") and "'nope' does not exist" in p for p in problems), problems
    assert len(problems) == 4, problems
    with pytest.raises(nb.ConfigError) as caught:
        check_workflow(wf)  # without importing, ports are unknown; the endpoints are still checked, once each
    checked = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{wf}:9: links[1]:") and "'nodot'" in p for p in checked), checked
    assert any(p.startswith(f"{wf}:11: links[3]:") and "'.x'" in p for p in checked), checked
    assert any(p.startswith(f"{wf}:12: links[4]:") and "'nope' does not exist" in p for p in checked), checked
    assert len(checked) == 3, checked


def test_workflows_nested_through_many_files_stop_at_a_located_limit(tmp_path: Path) -> None:
    for level in range(300):
        deeper = f"{{deeper: {{kind: workflow, file: f{level + 1}.yaml}}}}"
        inner = f"sub: {{kind: workflow, workflow: {{name: w{level}i, steps: {deeper}}}}}"
        (tmp_path / f"f{level}.yaml").write_text(f"name: w{level}\nsteps:\n  {inner}\n")
    (tmp_path / "f300.yaml").write_text("name: last\n")
    started = time.monotonic()
    for load in (load_workflow, check_workflow):
        with pytest.raises(nb.ConfigError) as caught:
            load(tmp_path / "f0.yaml")
        [problem] = caught.value.problems
        assert "nested more than 32 levels deep" in problem.message
        assert problem.file == str(tmp_path / "f16.yaml") and problem.line == 3
    assert time.monotonic() - started < 10


def test_a_file_unit_on_a_special_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    os.mkfifo(tmp_path / "pipe")
    wf = write(
        tmp_path / "wf.yaml",
        """
        name: units
        inputs:
          zero: {kind: file, path: /dev/zero, format: bytes}
          pipe: {kind: file, path: pipe}
          bad: {kind: file, path: bad.json}
          fresh: {kind: file, path: fresh.json}
        """,
    )
    started = time.monotonic()
    problems = {p.where: p.message for p in load_error(wf).problems}
    assert time.monotonic() - started < 5
    assert "a device, not a regular file" in problems["inputs.zero.path"]
    assert "named pipe" in problems["inputs.pipe.path"]
    assert "cannot read" in problems["inputs.bad.path"]
    assert "inputs.fresh.path" not in problems
