"""Functions referenced by the YAML documents in test_loader.py."""

from __future__ import annotations

import nanobrain as nb


def upper(text: str) -> str:
    return text.upper()


async def exclaim(text: str) -> str:
    return text + "!"


def length(text: str) -> int:
    return len(text)


def double(value: int) -> int:
    return value * 2


def is_long(text: str) -> bool:
    return len(text) > 3


def always(inputs: dict) -> bool:
    return True


class Repeat(nb.Step):
    """Repeat the text `times` times."""

    inputs = {"text": str}
    outputs = {"result": str}

    def __init__(self, times: int = 2, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.times = times

    async def process(self, inputs: dict) -> dict:
        return {"result": inputs["text"] * self.times}


not_callable = 42
