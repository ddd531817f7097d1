"""Parallel processing: processor pools, a request queue, load balancers, circuit breakers,
retries on other processors, health checks, rate limits, bulkheads and autoscaling.

    from nanobrain import RetryPolicy
    from nanobrain.infrastructure.parallel import ParallelStep

    step = ParallelStep("summarize", [agent_a, agent_b, agent_c], balancer="fastest_response",
                        failover=RetryPolicy(attempts=3), deadline=30)

Everything that depends on time takes a `clock` (a `VirtualClock` in tests). State changes
(breaker opened, processor unhealthy, pool scaled, request retried) are run events inside a run
and go to `on_event` hooks as `ParallelEvent`s.
"""

from .autoscale import AutoscalePolicy, Autoscaler
from .balancers import (
    BALANCERS,
    Balancer,
    FastestResponse,
    LeastLoaded,
    PowerOfTwoChoices,
    RoundRobin,
    Weighted,
    make_balancer,
)
from .breaker import BreakerPolicy, BreakerState, CircuitBreaker
from .deadlines import Deadline
from .errors import (
    AttemptTimeout,
    CircuitOpen,
    DeadlineExceeded,
    NoProcessorAvailable,
    ParallelError,
    PoolClosed,
)
from .events import EventEmitter, ParallelEvent
from .health import HealthChecker, HealthPolicy
from .parallel_step import ParallelAgentStep, ParallelConversationalAgentStep, ParallelStep
from .pool import ProcessorPool
from .processor import Processor
from .rate_limit import RateLimit, TokenBucket
from .request_queue import Request, RequestQueue

__all__ = [
    "BALANCERS",
    "AttemptTimeout",
    "AutoscalePolicy",
    "Autoscaler",
    "Balancer",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Deadline",
    "DeadlineExceeded",
    "EventEmitter",
    "FastestResponse",
    "HealthChecker",
    "HealthPolicy",
    "LeastLoaded",
    "NoProcessorAvailable",
    "ParallelAgentStep",
    "ParallelConversationalAgentStep",
    "ParallelError",
    "ParallelEvent",
    "ParallelStep",
    "PoolClosed",
    "PowerOfTwoChoices",
    "Processor",
    "ProcessorPool",
    "RateLimit",
    "Request",
    "RequestQueue",
    "RoundRobin",
    "TokenBucket",
    "Weighted",
    "make_balancer",
]
