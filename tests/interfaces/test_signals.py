"""StopSignals, the stop handling every long-lived process shares, with real signals to this process."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from nanobrain.interfaces.signals import Stopped, StopSignals


def _send_soon(signum: int, delay: float = 0.2) -> None:
    threading.Timer(delay, os.kill, args=(os.getpid(), signum)).start()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_cancels_the_work_which_cleans_up_before_run_raises(signum: signal.Signals) -> None:
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)  # clean-up that awaits still runs to its end
            cleaned.append("done")

    before = signal.getsignal(signum)
    with StopSignals() as stop, asyncio.Runner() as runner:
        _send_soon(signum)
        with pytest.raises(Stopped) as info:
            stop.run(runner, work())
        assert stop.received == signum
        assert stop.run(runner, asyncio.sleep(0, "next")) == "next"  # the next run starts afresh
        assert stop.received is None
    assert cleaned == ["done"]
    assert info.value.signum == signum and info.value.exit_code == 128 + signum
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_a_signal_outside_run_raises_where_the_process_waits() -> None:
    with StopSignals(), pytest.raises(Stopped) as info:
        _send_soon(signal.SIGTERM)
        time.sleep(30)  # like waiting for the next line of input
    assert info.value.signum == signal.SIGTERM


def test_a_loop_blocked_by_a_step_is_unblocked_after_the_grace_period() -> None:
    async def blocks() -> None:
        time.sleep(30)  # noqa: ASYNC251 - blocks the event loop on purpose: the cancel alone cannot reach it

    started = time.monotonic()
    with StopSignals(grace=0.3) as stop, asyncio.Runner() as runner:
        _send_soon(signal.SIGTERM)
        with pytest.raises(Stopped):
            stop.run(runner, blocks())
    assert time.monotonic() - started < 10
