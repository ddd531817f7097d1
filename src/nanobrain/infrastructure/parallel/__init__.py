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
    QueueFull,
)
from .events import EventEmitter, ParallelEvent
from .faults import FaultyStep, InjectedFault, SimulatedProcessor
from .health import HealthChecker, HealthPolicy
from .parallel_step import ParallelAgentStep, ParallelConversationalAgentStep, ParallelStep
from .pool import ProcessorPool
from .processor import Processor
from .rate_limit import RateLimit, TokenBucket
from .request_queue import Request, RequestQueue
from .wrappers import BreakerStep, RateLimitedStep, StepWrapper

__all__ = [
    "BALANCERS",
    "AttemptTimeout",
    "AutoscalePolicy",
    "Autoscaler",
    "Balancer",
    "BreakerPolicy",
    "BreakerStep",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Deadline",
    "DeadlineExceeded",
    "EventEmitter",
    "FastestResponse",
    "FaultyStep",
    "HealthChecker",
    "HealthPolicy",
    "InjectedFault",
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
    "QueueFull",
    "RateLimit",
    "RateLimitedStep",
    "Request",
    "RequestQueue",
    "RoundRobin",
    "SimulatedProcessor",
    "StepWrapper",
    "TokenBucket",
    "Weighted",
    "make_balancer",
]
