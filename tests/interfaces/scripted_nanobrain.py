"""`nanobrain` with the scripted model standing in for the model, for tests that need a real process.

Run it as `python scripted_nanobrain.py chat ...` with NANOBRAIN_MODEL=scripted. The scripted model
answers every message with NB_TEST_ANSWER, streamed NB_TEST_CHUNK characters at a time with
NB_TEST_DELAY seconds between chunks. Every other model spec resolves as usual.
"""

from __future__ import annotations

import os
from typing import Any

from nanobrain.llm import ScriptedModel, selection

_resolve = selection.resolve_model


def _resolve_with_scripted(spec: str | None = None, **options: Any) -> Any:
    if (spec or os.environ.get("NANOBRAIN_MODEL")) == "scripted":
        answer = os.environ.get("NB_TEST_ANSWER", "A scripted answer.")
        return ScriptedModel(
            respond=lambda request: answer,
            chunk_size=int(os.environ.get("NB_TEST_CHUNK", "4")),
            delay=float(os.environ.get("NB_TEST_DELAY", "0")),
        )
    return _resolve(spec, **options)


selection.resolve_model = _resolve_with_scripted  # looked up at call time by the chat and agents

if __name__ == "__main__":
    from nanobrain.interfaces.cli import main

    main()
