"""Alert rules over the run event stream, evaluated on a clock, posted to a webhook once per change.

    # alerts.yaml
    webhook: ${ALERT_WEBHOOK}          # default for every rule; a rule's own `webhook` wins
    alerts:
      - name: chat errors
        when: error_rate               # failed runs / ended runs within the window
        above: 0.05
        window: 60
        workflow: chat                 # optional: only this workflow (its nested runs are not counted)
      - name: breaker open
        when: breaker_open             # while any breaker is open
      - name: slow steps
        when: step_latency             # a quantile of step durations within the window
        quantile: 0.99
        above: 2.0
        window: 300
      - name: retries
        when: event_count              # how many events of a name (custom or run events) within the window
        event: request_retried
        above: 10
        window: 60
        for: 30                        # must hold this long before it fires (default 0)

`AlertManager` is an event sink (install it with `install()`); `evaluate()` checks every rule at
the clock's time and `run(every)` does so periodically. A rule fires once when its condition has
held for `for` seconds and resolves once when it no longer holds: each change is an `AlertEvent`
for the hooks, a log line, and one webhook POST (not one per evaluation). A webhook that fails is
tried again at the next evaluation until it has the notification.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.clock import Clock, RealClock
from ..core.errors import ConfigError, Problem
from ..core.events import Custom, RunEvent, RunFailed, RunFinished, StepFinished
from ..core.sinks import instrument
from ..infrastructure.security.redaction import mask_url, redact

logger = logging.getLogger("nanobrain.alerts")


class AlertRule(BaseModel):
    """One rule: a condition over a window of the event stream."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    when: Literal["error_rate", "breaker_open", "step_latency", "event_count"]
    above: float = 0.0
    window: float = Field(60.0, gt=0)
    hold: float = Field(0.0, ge=0, alias="for")
    workflow: str | None = None
    step: str | None = None
    event: str | None = None
    quantile: float = Field(0.99, gt=0, le=1)
    min_runs: int = Field(1, ge=1)
    webhook: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> AlertRule:
        if self.when == "event_count" and not self.event:
            raise ValueError("an event_count rule needs `event` (the event's name, e.g. request_retried)")
        if self.when == "error_rate" and not 0 <= self.above < 1:
            raise ValueError(f"an error_rate rule's `above` is a fraction in [0, 1), got {self.above}")
        return self


class AlertFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook: str | None = None
    alerts: list[AlertRule] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert changed: `state` is `firing` or `resolved`; `value` is what the condition measured."""

    rule: str
    state: Literal["firing", "resolved"]
    value: float
    time: float
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.rule,
            "state": self.state,
            "value": self.value,
            "time": self.time,
            "summary": self.summary,
        }


Post = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _State:
    since: float | None = None  # when the condition started holding
    firing: bool = False
    outbox: deque[dict[str, Any]] = field(default_factory=deque)


class AlertManager:
    """Watches the event stream and decides which rules fire (see the module's docstring)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        clock: Clock | None = None,
        webhook: str | None = None,
        post: Post | None = None,
        on_event: Callable[[AlertEvent], None] | None = None,
    ) -> None:
        names = [rule.name for rule in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"alert rules must have distinct names; repeated: {', '.join(duplicates)}")
        self.rules = list(rules)
        self.clock: Clock = clock or RealClock()
        self.webhook = webhook
        self._post = post or post_json
        self._hooks: list[Callable[[AlertEvent], None]] = [on_event] if on_event is not None else []
        self._states = {rule.name: _State() for rule in self.rules}
        self._horizon = max((rule.window for rule in self.rules), default=60.0)
        self._runs: deque[tuple[float, str, bool]] = deque()
        self._steps: deque[tuple[float, str, str, float]] = deque()
        self._events: deque[tuple[float, str]] = deque()
        self._open_breakers: set[tuple[str, str]] = set()
        self._counted = {rule.event for rule in self.rules if rule.when == "event_count"}

    # -- the sink ------------------------------------------------------------------------------------
    def install(self) -> Callable[[], None]:
        return instrument(self)

    def subscribe(self, hook: Callable[[AlertEvent], None]) -> None:
        self._hooks.append(hook)

    def __call__(self, event: RunEvent) -> None:
        now = self.clock.now()
        if isinstance(event, RunFinished | RunFailed):
            self._runs.append((now, event.path, isinstance(event, RunFailed)))
        elif isinstance(event, StepFinished):
            self._steps.append((now, event.path, event.step, event.duration))
        elif isinstance(event, Custom):
            if event.name == "breaker_opened":
                self._open_breakers.add((str(event.data.get("pool")), str(event.data.get("processor"))))
            elif event.name == "breaker_closed":
                self._open_breakers.discard((str(event.data.get("pool")), str(event.data.get("processor"))))
        name = event.name if isinstance(event, Custom) else event.type
        if name in self._counted:
            self._events.append((now, name))

    # -- evaluation ----------------------------------------------------------------------------------
    def firing(self) -> list[str]:
        """The names of the rules firing now."""
        return [name for name, state in self._states.items() if state.firing]

    async def evaluate(self) -> list[AlertEvent]:
        """Check every rule now; returns the changes (and notifies hooks and webhooks of them)."""
        now = self.clock.now()
        self._forget(now - self._horizon)
        changes = []
        for rule in self.rules:
            state = self._states[rule.name]
            value = self.measure(rule, now)
            holds = value is not None and value > rule.above
            if holds:
                if state.since is None:
                    state.since = now
                if not state.firing and now - state.since >= rule.hold:
                    state.firing = True
                    changes.append(self._change(rule, state, "firing", value or 0.0, now))
            else:
                state.since = None
                if state.firing:
                    state.firing = False
                    changes.append(self._change(rule, state, "resolved", value or 0.0, now))
        await self._deliver()
        return changes

    async def run(self, every: float = 10.0) -> None:
        """Evaluate every `every` seconds on the clock until cancelled."""
        while True:
            await self.clock.sleep(every)
            try:
                await self.evaluate()
            except Exception:  # a bad rule or hook must not stop the other alerts
                logger.exception("alert evaluation failed")

    def measure(self, rule: AlertRule, now: float) -> float | None:
        """What `rule` measures over its window at `now` (None: not enough data to say)."""
        start = now - rule.window
        if rule.when == "error_rate":
            ended = [failed for t, path, failed in self._runs if t > start and _matches(rule.workflow, path)]
            if len(ended) < rule.min_runs:
                return None
            return sum(ended) / len(ended)
        if rule.when == "breaker_open":
            return float(len(self._open_breakers))
        if rule.when == "step_latency":
            durations = sorted(
                d
                for t, path, step, d in self._steps
                if t > start and _matches(rule.workflow, path) and (rule.step is None or rule.step == step)
            )
            if not durations:
                return None
            return durations[min(len(durations) - 1, max(0, math.ceil(rule.quantile * len(durations)) - 1))]
        return float(sum(1 for t, name in self._events if t > start and name == rule.event))

    def _forget(self, before: float) -> None:
        for queue in (self._runs, self._steps, self._events):
            while queue and queue[0][0] <= before:
                queue.popleft()

    def _change(
        self, rule: AlertRule, state: _State, kind: Literal["firing", "resolved"], value: float, now: float
    ) -> AlertEvent:
        summary = _summary(rule, kind, value)
        change = AlertEvent(rule.name, kind, value, now, summary)
        (logger.warning if kind == "firing" else logger.info)("alert %s: %s", kind, summary)
        for hook in tuple(self._hooks):
            try:
                hook(change)
            except Exception:
                logger.exception("alert hook %r failed on %s", hook, rule.name)
        if rule.webhook or self.webhook:
            state.outbox.append(change.to_dict())
        return change

    async def _deliver(self) -> None:
        for rule in self.rules:
            state = self._states[rule.name]
            url = rule.webhook or self.webhook
            while state.outbox and url:
                try:
                    await self._post(url, state.outbox[0])
                except Exception as exc:  # kept for the next evaluation: the notification is not lost
                    logger.warning("alert webhook %s failed: %s", mask_url(url), redact(str(exc)))
                    break
                state.outbox.popleft()


def _matches(workflow: str | None, path: str) -> bool:
    return workflow is None or path == workflow


def _summary(rule: AlertRule, kind: str, value: float) -> str:
    what = {
        "error_rate": f"error rate {value:.1%} (above {rule.above:.1%}) over {rule.window:g}s",
        "breaker_open": f"{value:g} breaker(s) open",
        "step_latency": f"p{rule.quantile * 100:g} step latency {value:.3f}s (above {rule.above:g}s) "
        f"over {rule.window:g}s",
        "event_count": f"{value:g} {rule.event} event(s) (above {rule.above:g}) over {rule.window:g}s",
    }[rule.when]
    return f"{rule.name}: {what}" if kind == "firing" else f"{rule.name}: resolved ({what})"


async def post_json(url: str, body: dict[str, Any]) -> None:
    """POST `body` as JSON; a status of 400 or more is an error."""
    import httpx

    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.post(url, json=body)
    response.raise_for_status()


def load_alert_rules(path: str | os.PathLike[str]) -> tuple[list[AlertRule], str | None]:
    """The rules of an alert file and its default webhook; a bad file is a located `ConfigError`."""
    from ..config.problems import describe
    from ..config.yaml_source import expand_env, read

    source = read(path)
    problems: list[Problem] = list(source.problems)
    data = expand_env(source.data, source, problems)
    if problems:
        raise ConfigError(problems, subject=source.file or str(path))
    try:
        document = AlertFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [
            source.problem(tuple(error["loc"]), describe(error, source.written(tuple(error["loc"]))))
            for error in exc.errors()
        ]
        raise ConfigError(problems, subject=source.file or str(path)) from None
    return document.alerts, document.webhook


__all__ = ["AlertEvent", "AlertFile", "AlertManager", "AlertRule", "load_alert_rules", "post_json"]
