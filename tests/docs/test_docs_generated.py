"""The generated reference pages and diagrams match the code (regenerate: python docs/gen_reference.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import nanobrain as nb
from docs import gen_reference

DOCS = Path(gen_reference.__file__).resolve().parent


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return gen_reference.generate()


def test_committed_generated_files_are_up_to_date() -> None:
    # In a fresh process: tests register step kinds of their own, which the schema would list.
    done = subprocess.run(
        [sys.executable, str(DOCS / "gen_reference.py"), "--check"],
        capture_output=True, text=True, cwd=DOCS.parent, timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}; run python docs/gen_reference.py"


def test_check_mode_reports_a_stale_page(
    generated: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # `generated` imports every module first: imported under capsys, the mcp SDK would keep capsys's
    # stderr as its default errlog, and a later stdio server (the MCP guide's) could not start.
    monkeypatch.setattr(gen_reference, "DOCS", tmp_path)
    assert gen_reference.main([]) == 0
    (tmp_path / "reference" / "cli.md").write_text("edited by hand\n")
    assert gen_reference.main(["--check"]) == 1
    assert "docs/reference/cli.md" in capsys.readouterr().err


def test_every_public_error_class_has_an_entry(generated: dict[str, str]) -> None:
    page = generated["reference/errors.md"]
    classes = gen_reference.error_classes()
    names = {cls.__name__ for cls in classes}
    # The walk finds the errors nanobrain exports, and those of subpackages.
    exported = {n for n in nb.__all__ if isinstance(getattr(nb, n), type) and issubclass(getattr(nb, n), Exception)}
    assert exported <= names
    assert {"ProviderError", "CircuitOpen", "ApiKeyNotFound", "AgentError"} <= names
    for cls in classes:
        assert f"### `{cls.__name__}`" in page, cls
        doc = (cls.__doc__ or "").strip().splitlines()
        if "__doc__" in vars(cls) and doc:
            assert doc[0].strip() in page, f"{cls.__name__}: its docstring is the cause the page gives"


def test_cli_reference_covers_every_command(generated: dict[str, str]) -> None:
    import typer

    from nanobrain.interfaces.cli import app

    page = generated["reference/cli.md"]

    def paths(command, prefix: str) -> list[str]:
        found = [prefix]
        for name, sub in getattr(command, "commands", {}).items():
            found += paths(sub, f"{prefix} {name}")
        return found

    for path in paths(typer.main.get_command(app), "nanobrain"):
        assert f"`{path}`" in page, path
    assert "`--durable`" in page


def test_http_reference_lists_every_route_of_the_openapi_document(generated: dict[str, str]) -> None:
    import json

    doc = json.loads(generated["reference/openapi.json"])
    page = generated["reference/http-api.md"]
    for path, operations in doc["paths"].items():
        for method in operations:
            assert f"| {method.upper()} | `{path}` |" in page
    assert "/v1/chat/completions" in doc["paths"]


def test_yaml_schema_page_lists_the_schemas_top_level_keys(generated: dict[str, str]) -> None:
    import json

    from nanobrain.config.schema import json_schema

    def canonical(doc: dict) -> dict:
        doc["properties"]["steps"]["additionalProperties"]["anyOf"].sort(key=lambda v: v["$ref"])
        return doc

    assert json.loads(generated["reference/schema.json"]) == canonical(json_schema())
    page = generated["reference/yaml-schema.md"]
    for key in json_schema()["properties"]:
        assert re.search(rf"\| `{key}`", page), key


def test_diagrams_are_to_mermaid_of_the_examples(generated: dict[str, str]) -> None:
    from nanobrain.config import load_workflow
    from nanobrain.core.graph_export import to_mermaid

    examples = DOCS.parent / "examples"
    for name in gen_reference.DIAGRAM_EXAMPLES:
        assert generated[f"diagrams/{name}.mmd"].strip() == to_mermaid(load_workflow(examples / f"{name}.yaml")).strip()
    used = "".join(p.read_text() for p in (DOCS / "concepts").glob("*.md"))
    assert all(f'"diagrams/{name}.mmd"' in used for name in gen_reference.DIAGRAM_EXAMPLES)


def test_benchmarks_page_describes_every_benchmark_script(generated: dict[str, str]) -> None:
    page = generated["benchmarks.md"]
    scripts = [p for p in (DOCS.parent / "benchmarks").glob("*.py") if p.stem not in gen_reference.BENCHMARK_HELPERS]
    assert scripts
    for script in scripts:
        assert f"## `benchmarks/{script.name}`" in page, script.name
