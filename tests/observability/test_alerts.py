"""Alert rules on the virtual clock: they fire and resolve once, and a real webhook on 127.0.0.1
gets one notification per change, not one per evaluation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.observability.workloads import failing_workflow, parallel_workflow

import nanobrain as nb
from nanobrain.observability.alerts import AlertEvent, AlertManager, AlertRule, load_alert_rules


class Webhook:
    def __init__(self) -> None:
        self.received: list[dict] = []  # type: ignore[type-arg]
        self.failures_left = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.failures_left:
                    hook.failures_left -= 1
                    status = 503
                else:
                    hook.received.append(body)
                    status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


async def ok_run() -> None:
    await nb.Workflow.sequence(lambda x: x, name="failing").run(x=1)


async def test_error_rate_fires_after_holding_and_resolves_with_one_post_each(webhook: Webhook) -> None:
    clock = nb.VirtualClock()
    changes: list[AlertEvent] = []
    rule = AlertRule.model_validate(
        {"name": "errors", "when": "error_rate", "above": 0.05, "window": 60, "for": 30, "workflow": "failing"}
    )
    manager = AlertManager([rule], clock=clock, webhook=webhook.url, on_event=changes.append)
    remove = manager.install()
    try:
        await clock.advance(10)
        with pytest.raises(nb.StepError):
            await failing_workflow().run(x=1)
        await ok_run()
        assert manager.measure(rule, clock.now()) == 0.5
        assert await manager.evaluate() == []  # holds since t=10, not yet for 30s
        await clock.advance(20)
        assert await manager.evaluate() == []
        await clock.advance(10)  # t=40: held 30s
        (fired,) = await manager.evaluate()
        assert (fired.rule, fired.state, fired.value) == ("errors", "firing", 0.5)
        for _ in range(3):  # still firing: no new notification
            await clock.advance(5)
            assert await manager.evaluate() == []
        assert manager.firing() == ["errors"]
        await clock.advance(20)  # t=75: the runs at t=10 left the window
        (resolved,) = await manager.evaluate()
        assert resolved.state == "resolved"
        assert await manager.evaluate() == []
    finally:
        remove()
    assert [(c.rule, c.state) for c in changes] == [("errors", "firing"), ("errors", "resolved")]
    assert [(b["alert"], b["state"]) for b in webhook.received] == [("errors", "firing"), ("errors", "resolved")]
    assert webhook.received[0]["summary"].startswith("errors: error rate 50.0% (above 5.0%)")


async def test_breaker_open_and_event_count_rules_from_a_parallel_run(webhook: Webhook) -> None:
    clock = nb.VirtualClock()
    rules = [
        AlertRule(name="breaker", when="breaker_open"),
        AlertRule(name="retries", when="event_count", event="request_retried", above=0, window=60),
    ]
    manager = AlertManager(rules, clock=clock, webhook=webhook.url)
    remove = manager.install()
    try:
        await parallel_workflow().run(request="r")
    finally:
        remove()
    assert sorted((c.rule, c.state) for c in await manager.evaluate()) == [
        ("breaker", "firing"),
        ("retries", "firing"),
    ]
    await clock.advance(61)
    # The retry left the window; the breaker stays open (no breaker_closed event came).
    assert [(c.rule, c.state) for c in await manager.evaluate()] == [("retries", "resolved")]
    assert len(webhook.received) == 3


async def test_step_latency_quantile() -> None:
    clock = nb.VirtualClock()
    rule = AlertRule(name="slow", when="step_latency", quantile=0.99, above=0.02, window=60, step="nap")

    @nb.step
    async def nap(x: float) -> float:
        import asyncio

        await asyncio.sleep(x)
        return x

    manager = AlertManager([rule], clock=clock)
    remove = manager.install()
    try:
        workflow = nb.Workflow.sequence(nap, name="naps")
        for seconds in (0.0, 0.0, 0.0):
            await workflow.run(x=seconds)
        assert await manager.evaluate() == []
        await workflow.run(x=0.05)
        (fired,) = await manager.evaluate()
    finally:
        remove()
    assert fired.state == "firing" and fired.value >= 0.05


async def test_a_failing_webhook_gets_the_notification_later_exactly_once(webhook: Webhook) -> None:
    clock = nb.VirtualClock()
    manager = AlertManager([AlertRule(name="breaker", when="breaker_open")], clock=clock, webhook=webhook.url)
    webhook.failures_left = 2
    manager(nb.Custom("r", "w", step="s", name="breaker_opened", data={"pool": "p", "processor": "a"}))
    await manager.evaluate()  # fires; the post fails (503)
    await manager.evaluate()  # still firing; the retried post fails again
    assert webhook.received == []
    await manager.evaluate()
    await manager.evaluate()
    assert [b["state"] for b in webhook.received] == ["firing"]


async def test_periodic_evaluation_on_the_clock() -> None:
    import asyncio

    clock = nb.VirtualClock()
    changes: list[AlertEvent] = []
    manager = AlertManager([AlertRule(name="breaker", when="breaker_open")], clock=clock, on_event=changes.append)
    task = asyncio.create_task(manager.run(every=10))
    try:
        await clock.advance(10)
        assert changes == []
        manager(nb.Custom("r", "w", step="s", name="breaker_opened", data={"pool": "p", "processor": "a"}))
        await clock.advance(10)
        manager(nb.Custom("r", "w", step="s", name="breaker_closed", data={"pool": "p", "processor": "a"}))
        await clock.advance(10)
    finally:
        task.cancel()
    assert [(c.state, c.time) for c in changes] == [("firing", 20.0), ("resolved", 30.0)]


def test_rules_load_from_yaml_with_env_and_bad_files_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_HOOK", "http://127.0.0.1:9/hook")
    good = tmp_path / "alerts.yaml"
    good.write_text(
        "webhook: ${ALERT_HOOK}\n"
        "alerts:\n"
        "  - name: errors\n"
        "    when: error_rate\n"
        "    above: 0.05\n"
        "    for: 60\n"
        "  - {name: breaker, when: breaker_open, webhook: 'http://127.0.0.1:9/other'}\n"
    )
    rules, webhook = load_alert_rules(good)
    assert webhook == "http://127.0.0.1:9/hook"
    assert [(r.name, r.when, r.hold) for r in rules] == [("errors", "error_rate", 60.0), ("breaker", "breaker_open", 0)]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "alerts:\n  - name: errors\n    when: error_rate\n    above: lots\n  - name: x\n    when: sometimes\n"
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_alert_rules(bad)
    text = str(caught.value)
    assert f"{bad}:4: alerts[0].above:" in text
    assert f"{bad}:6: alerts[1].when:" in text
    count = tmp_path / "count.yaml"
    count.write_text("alerts:\n  - {name: retries, when: event_count}\n")
    with pytest.raises(nb.ConfigError, match="needs `event`"):
        load_alert_rules(count)
    with pytest.raises(ValueError, match="repeated: a"):
        AlertManager([AlertRule(name="a", when="breaker_open"), AlertRule(name="a", when="breaker_open")])
