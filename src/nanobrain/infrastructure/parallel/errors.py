"""Errors of the parallel layer (which errors are worth retrying: `core.retry.is_retryable`)."""

from __future__ import annotations

from ...core.errors import NanoBrainError


class ParallelError(NanoBrainError):
    """Base class of the parallel layer's errors. `retryable` says whether another try may help."""

    retryable = False


class CircuitOpen(ParallelError):
    """A circuit breaker refused a call: its processor failed too often and is cooling down."""

    retryable = True

    def __init__(self, name: str, retry_at: float | None = None) -> None:
        self.name = name
        self.retry_at = retry_at
        when = f" until t={retry_at:.3f}" if retry_at is not None else ""
        super().__init__(f"circuit {name!r} is open{when}")


class NoProcessorAvailable(ParallelError):
    """The pool has no processor at all (all were removed)."""

    retryable = True


class AttemptTimeout(ParallelError, TimeoutError):
    """One attempt on one processor took longer than the attempt timeout and was cancelled."""

    retryable = True

    def __init__(self, processor: str, seconds: float) -> None:
        self.processor = processor
        self.seconds = seconds
        super().__init__(f"processor {processor!r} did not answer within {seconds:g}s (attempt cancelled)")


class DeadlineExceeded(ParallelError, TimeoutError):
    """A request did not finish within its deadline (waiting, attempts and backoff included)."""

    def __init__(self, pool: str, seconds: float, attempts: int, last_error: BaseException | None = None) -> None:
        self.pool = pool
        self.seconds = seconds
        self.attempts = attempts
        self.last_error = last_error
        detail = f"; last error: {type(last_error).__name__}: {last_error}" if last_error is not None else ""
        super().__init__(
            f"request to {pool!r} did not finish within its deadline of {seconds:g}s "
            f"({attempts} attempt{'s' if attempts != 1 else ''}{detail})"
        )


class PoolClosed(ParallelError):
    """The pool was closed; it accepts no more requests."""
