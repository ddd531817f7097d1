"""Functions that the map and collect YAML tests reference by `module:attribute`."""

from __future__ import annotations


def square(x: int) -> int:
    return x * x


def total(result: list[int]) -> int:
    return sum(result)


def inverse(x: int) -> float:
    return 1 / x


def plus_one(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def add_up(values: list[int]) -> int:
    return sum(values)


def keys(values: dict[str, int]) -> list[str]:
    return sorted(values)
