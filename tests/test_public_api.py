"""The public surface: the agent API from the top-level package (loaded lazily) and every
exception reachable from `nanobrain.errors`."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import nanobrain
import nanobrain.errors
from nanobrain.core.errors import NanoBrainError


def test_the_agent_api_is_importable_from_the_top_level_package() -> None:
    from nanobrain import Agent, ScriptedModel, Tool, tool
    from nanobrain.agents.agent import Agent as AgentClass
    from nanobrain.llm.scripted import ScriptedModel as ScriptedClass
    from nanobrain.llm.tools import Tool as ToolClass
    from nanobrain.llm.tools import tool as tool_decorator

    assert (Agent, ScriptedModel, Tool, tool) == (AgentClass, ScriptedClass, ToolClass, tool_decorator)
    assert {"Agent", "ScriptedModel", "Tool", "tool"} <= set(nanobrain.__all__) & set(dir(nanobrain))


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    try:
        nanobrain.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_nanobrain_loads_neither_pydantic_nor_the_model_layer() -> None:
    code = (
        "import sys, nanobrain\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m.startswith(('nanobrain.llm', 'nanobrain.agents'))))\n"
        "from nanobrain import Agent\n"
        "print('nanobrain.agents.agent' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split("\n")[:2] == ["[]", "True"]


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_nanobrain_error_in_the_package_is_reachable_from_nanobrain_errors() -> None:
    for module in pkgutil.walk_packages(nanobrain.__path__, "nanobrain."):
        importlib.import_module(module.name)
    ours = {cls for cls in _subclasses(NanoBrainError) if cls.__module__.startswith("nanobrain.")}
    assert len(ours) > 40
    missing = sorted(cls.__name__ for cls in ours if getattr(nanobrain.errors, cls.__name__, None) is not cls)
    assert missing == []
    assert nanobrain.errors.NanoBrainError is NanoBrainError
    assert set(nanobrain.errors.__all__) == {cls.__name__ for cls in ours} | {"NanoBrainError"}
