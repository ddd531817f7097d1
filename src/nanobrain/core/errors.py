"""Exceptions raised by NanoBrain. Every error says where and what."""

from __future__ import annotations

from collections.abc import Sequence


class NanoBrainError(Exception):
    """Base class of every error NanoBrain raises on purpose."""


class UnitTypeError(NanoBrainError, TypeError):
    """A value did not match the declared type of a data unit."""

    def __init__(self, unit: str, expected: object, value: object, detail: str = "") -> None:
        self.unit = unit
        self.expected = expected
        self.value_type = type(value).__name__
        expected_name = getattr(expected, "__name__", None) or repr(expected)
        message = f"data unit {unit!r} expects {expected_name}, got {self.value_type}"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class StreamClosed(NanoBrainError):
    """A value was set on a stream unit after it was closed."""


class Problem:
    """One thing wrong with a workflow or a config: where it is and what is wrong."""

    __slots__ = ("file", "line", "message", "where")

    def __init__(self, where: str, message: str, *, file: str | None = None, line: int | None = None):
        self.where = where
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        location = ""
        if self.file:
            location = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            location = f"line {self.line}: "
        where = f"{self.where}: " if self.where else ""
        return f"{location}{where}{self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


MAX_LISTED_PROBLEMS = 50
"""Problems listed in an error's message (all of them stay in its `problems`)."""


class ProblemsError(NanoBrainError):
    """Several problems found at once; `problems` lists them all."""

    kind = "invalid"

    def __init__(self, problems: Sequence[Problem], *, subject: str = "") -> None:
        self.problems = list(problems)
        self.subject = subject
        head = f"{subject} is {self.kind}" if subject else self.kind
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:MAX_LISTED_PROBLEMS])
        if count > MAX_LISTED_PROBLEMS:  # the message stays readable; `problems` keeps them all
            lines += f"\n  ... and {count - MAX_LISTED_PROBLEMS} more"
        super().__init__(f"{head} ({count} problem{'s' if count != 1 else ''}):\n{lines}")


class WorkflowValidationError(ProblemsError):
    """A workflow's graph is not valid (found when it is built)."""

    kind = "not a valid workflow"


class ConfigError(ProblemsError):
    """A configuration document is not valid."""

    kind = "not a valid configuration"


class StepError(NanoBrainError):
    """A step raised; the original exception is chained as `__cause__`."""

    def __init__(self, step: str, error: BaseException) -> None:
        self.step = step
        self.error = error
        super().__init__(f"step {step!r} failed: {type(error).__name__}: {error}")


class StepTimeout(NanoBrainError, TimeoutError):
    """A step ran longer than its timeout. Async work in the event loop is cancelled; work in a
    thread or process cannot be stopped from outside, so the run stops waiting for it."""

    def __init__(self, step: str, seconds: float, *, cancelled: bool = True) -> None:
        self.step = step
        self.seconds = seconds
        self.cancelled = cancelled
        what = "was cancelled" if cancelled else "was abandoned (its thread or process may still be running)"
        super().__init__(f"step {step!r} did not finish within {seconds:g}s and {what}")


class LinkFailed(NanoBrainError):
    """A link's transform or condition raised; the original exception is chained as `__cause__`."""

    def __init__(self, link: str, error: BaseException) -> None:
        self.link = link
        self.error = error
        super().__init__(f"link {link} failed: {type(error).__name__}: {error}")


class CycleLimitExceeded(NanoBrainError):
    """A link in a cycle carried more values than its iteration bound allows."""

    def __init__(self, link: str, limit: int) -> None:
        self.link = link
        self.limit = limit
        super().__init__(f"link {link} exceeded its bound of {limit} iteration(s) in one run")


class ExecutorError(NanoBrainError):
    """An executor could not run a step's function: a value could not be sent to or from its
    workers, or its cluster lost the workers that ran it and has none left to run it again."""


class CapacityExceeded(ExecutorError):
    """A step declares more CPU or memory than its executor will ever have: it would wait forever."""


class RunError(NanoBrainError):
    """A run could not complete (for reasons other than a failing step)."""


class ItemFailed(NanoBrainError):
    """One item of a map failed; the original exception is `error` (and `__cause__`)."""

    def __init__(self, step: str, index: int, item: object, error: BaseException) -> None:
        self.step = step
        self.index = index
        self.item = item
        self.error = error
        shown = repr(item)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"map {step!r}: item {index} ({shown}) failed: {type(error).__name__}: {error}")

    def __reduce__(self) -> tuple[type[ItemFailed], tuple[str, int, object, BaseException]]:
        # Journaled with a durable run's outputs: rebuild from the fields, not from the message.
        return (type(self), (self.step, self.index, self.item, self.error))
