"""Label values taken from run events, kept bounded.

Labels name structure (workflow paths, steps, models, tools, error types), never run ids or user
text. A program that names workflows dynamically could still create unbounded series, so each
label keeps at most `limit` distinct values; later ones are counted under `other`.
"""

from __future__ import annotations

OTHER = "other"


class BoundedLabel:
    """Maps raw values to at most `limit` distinct label values (the rest become `other`)."""

    __slots__ = ("_seen", "limit")

    def __init__(self, limit: int = 200) -> None:
        if limit < 1:
            raise ValueError(f"a label needs room for at least one value, got limit={limit}")
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        seen = self._seen
        if text in seen:
            return text
        if len(seen) >= self.limit:
            return OTHER
        seen.add(text)
        return text


def error_type(error: BaseException | None) -> str:
    """The type name of the failure's root cause (a step's error, not the `StepError` around it)."""
    if error is None:
        return ""
    cause = error.__cause__ if error.__cause__ is not None else error
    return type(cause).__name__


__all__ = ["OTHER", "BoundedLabel", "error_type"]
