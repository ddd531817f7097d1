"""Runs shared between replicas through Redis: events in Redis Streams, cancels over pub/sub.

Each replica still runs its own runs; the bus mirrors what other replicas need to see them:

- every event of a run is appended to the stream `{prefix}run:{id}:events` with the entry id
  `SEQ-0`, so a reader on any replica resumes after `Last-Event-ID: N` by reading after `N-0`,
  and a late joiner replays what the stream still keeps (the newest `max_events`);
- the run's end is the entry `SEQ-1` (after its last event; a resumed durable run goes on with
  `SEQ+1-0`), and its view (status, outputs) lives in the hash `{prefix}run:{id}`;
- `{prefix}runs` (a sorted set by start time) lists the runs of every replica;
- a cancel asked of another replica is published on `{prefix}control`; the owner cancels it and
  its end reaches the asker through the stream;
- each replica refreshes `{prefix}replica:{id}` every few seconds: a running run whose owner
  stopped refreshing (killed) reads as interrupted instead of running forever.

Writes leave the run's path at once (a queue), and one writer task sends them in pipelined
batches, in order. Redis being unreachable is logged; the runs themselves go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...infrastructure.data.redis_client import listen_json
from .redis_nodes import RedisNodes, open_redis
from .runs import HEARTBEAT, Record, encode

if TYPE_CHECKING:
    from .runs import ServerRun

log = logging.getLogger("nanobrain.http.runs")

ENDED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


def is_over(view: dict[str, Any]) -> bool:
    """Whether the run does no more work: it ended, or (durable) it waits for input that may resume it."""
    return view["status"] in ENDED or (view["status"] == "waiting" and view.get("mode") != "long_lived")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_seq(entry_id: Any) -> tuple[int, int]:
    ms, _, n = _text(entry_id).partition("-")
    return int(ms), int(n or 0)


__all__ = ["RemoteRun", "RunBus", "open_redis"]


class RunBus:
    """The runs of every replica that shares `redis` (a client, or `RedisNodes` to spread runs over
    several servers), keys under `prefix` (for a client; nodes carry their own)."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "nanobrain:",
        replica: str | None = None,
        max_events: int = 10_000,
        keep_seconds: float = 24 * 3600,
        keep_runs: int = 10_000,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.nodes = redis if isinstance(redis, RedisNodes) else RedisNodes([redis], prefix=prefix)
        self.client = self.nodes.primary  # the control channel, heartbeats and the index of runs
        self.prefix = self.nodes.prefix
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_events = max_events
        self.keep_seconds = keep_seconds
        self.keep_runs = keep_runs
        self.heartbeat_seconds = heartbeat_seconds
        self._queue: asyncio.Queue[tuple[str, ServerRun, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_cancel: Callable[[str], Awaitable[None]] | None = None
        self._failing = False

    # -- keys ---------------------------------------------------------------------------------
    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def _events_key(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:events"

    def _replica_key(self, replica: str) -> str:
        return f"{self.prefix}replica:{replica}"

    @property
    def _control(self) -> str:
        return f"{self.prefix}control"

    # -- life ---------------------------------------------------------------------------------
    async def start(self, on_cancel: Callable[[str], Awaitable[None]]) -> None:
        """Begin mirroring and listening; `on_cancel(run_id)` is called for cancels from other replicas."""
        self._on_cancel = on_cancel
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._control)  # before serving: a cancel sent right after is not missed
        await self.client.set(self._replica_key(self.replica), b"1", px=int(self.heartbeat_seconds * 3000))
        self._tasks = [
            asyncio.ensure_future(self._write()),
            asyncio.ensure_future(self._listen(pubsub)),
            asyncio.ensure_future(self._beat()),
        ]

    async def aclose(self, *, drain_seconds: float = 5.0) -> None:
        """Send what is queued (within `drain_seconds`), stop, and say this replica is gone."""
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(drain_seconds):
                await self._queue.join()
        except TimeoutError:
            log.warning("run bus: %d run updates not sent to Redis at shutdown", self._queue.qsize())
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.client.delete(self._replica_key(self.replica))
        except Exception as exc:  # Redis may be gone first: nothing left to tell it
            log.debug("run bus: could not remove the replica key: %s", exc)

    # -- the owner's side (sync: called from the run's event path) -------------------------------
    def started(self, run: ServerRun) -> None:
        self._queue.put_nowait(("start", run, run.view()))

    def event(self, run: ServerRun, record: Any) -> None:
        self._queue.put_nowait(("event", run, record))

    def ended(self, run: ServerRun) -> None:
        self._queue.put_nowait(("end", run, run.view()))

    def reopened(self, run: ServerRun) -> None:
        self._queue.put_nowait(("start", run, run.view()))

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 1000:
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
                if self._failing:
                    log.warning("run bus: Redis is reachable again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The runs go on locally; other replicas miss these updates.
                if not self._failing:
                    log.error("run bus: cannot write run updates to Redis (%d dropped): %s", len(batch), exc)
                self._failing = True
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _send(self, batch: Sequence[tuple[str, ServerRun, Any]]) -> None:
        pipes: dict[int, Any] = {}

        def pipeline(client: Any) -> Any:
            if id(client) not in pipes:
                pipes[id(client)] = client.pipeline(transaction=False)
            return pipes[id(client)]

        index = pipeline(self.client)
        touched: dict[str, ServerRun] = {}
        for kind, run, value in batch:
            touched[run.id] = run
            pipe = pipeline(self.nodes.for_key(run.id))
            if kind == "event":
                seq, event_type, event = value
                data = encode(event.to_dict())
                pipe.xadd(
                    self._events_key(run.id), {"t": event_type, "d": data}, id=f"{seq}-0",
                    maxlen=self.max_events, approximate=False,
                )  # fmt: skip
            else:
                view = encode(value)
                fields = {"view": view, "owner": self.replica, "status": value["status"]}
                pipe.hset(self._run_key(run.id), mapping=fields)
                if kind == "start":
                    index.zadd(f"{self.prefix}runs", {run.id: run.created})
                    index.zremrangebyrank(f"{self.prefix}runs", 0, -self.keep_runs - 1)
                else:
                    pipe.xadd(
                        self._events_key(run.id), {"t": "end", "d": view}, id=f"{value['events']}-1",
                        maxlen=self.max_events, approximate=False,
                    )  # fmt: skip
        ttl = int(self.keep_seconds * 1000)
        for run_id, run in touched.items():
            pipe = pipeline(self.nodes.for_key(run_id))
            pipe.hset(self._run_key(run_id), "events", run.event_count)
            pipe.pexpire(self._run_key(run_id), ttl)
            pipe.pexpire(self._events_key(run_id), ttl)
        await asyncio.gather(*(pipe.execute(raise_on_error=False) for pipe in pipes.values()))

    async def _listen(self, pubsub: Any) -> None:
        await listen_json(pubsub, self._ordered, what="run bus", log=log, poll=self.heartbeat_seconds)

    async def _ordered(self, order: dict[str, Any]) -> None:
        run_id = str(order["cancel"])
        if self._on_cancel is not None:
            await self._on_cancel(run_id)

    async def _beat(self) -> None:
        key, ttl = self._replica_key(self.replica), int(self.heartbeat_seconds * 3000)
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.client.set(key, b"1", px=ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("run bus: cannot refresh this replica's heartbeat: %s", exc)

    # -- any replica's side ---------------------------------------------------------------------
    async def alive(self, replica: str) -> bool:
        return replica == self.replica or bool(await self.client.exists(self._replica_key(replica)))

    async def view(self, run_id: str) -> dict[str, Any] | None:
        """The run's view as its owner last wrote it; a running run of a vanished replica is interrupted."""
        found = await self.nodes.for_key(run_id).hgetall(self._run_key(run_id))
        if not found:
            return None
        fields = {_text(k): _text(v) for k, v in found.items()}
        view: dict[str, Any] = json.loads(fields["view"])
        view["events"] = int(fields.get("events", view.get("events", 0)))
        view["replica"] = fields.get("owner", "")
        if not is_over(view) and not await self.alive(view["replica"]):
            view["status"] = "interrupted"
            view["error"] = {"status": 503, "detail": f"replica {view['replica']} stopped while the run was running"}
        return view

    async def views(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` runs of every replica, oldest first."""
        ids = [_text(i) for i in await self.client.zrange(f"{self.prefix}runs", -limit, -1)]
        found = await asyncio.gather(*(self.view(run_id) for run_id in ids))
        return [view for view in found if view is not None]

    async def first_kept(self, run_id: str, events: int) -> int:
        first = await self.nodes.for_key(run_id).xrange(self._events_key(run_id), count=1)
        return _entry_seq(first[0][0])[0] if first else events + 1

    async def cancel(self, run_id: str, *, wait_seconds: float = 10.0) -> dict[str, Any] | None:
        """Ask the owner to cancel `run_id` and wait (up to `wait_seconds`) for the run to end; its view."""
        key, node = self._events_key(run_id), self.nodes.for_key(run_id)
        last = await node.xrevrange(key, count=1)
        after = _text(last[0][0]) if last else "0-0"
        await self.client.publish(self._control, json.dumps({"cancel": run_id, "from": self.replica}))
        deadline = time.monotonic() + wait_seconds
        while (left := deadline - time.monotonic()) > 0:
            view = await self.view(run_id)
            if view is None or is_over(view):
                return view
            found = await node.xread({key: after}, block=max(1, int(min(left, 1.0) * 1000)))
            for _, entries in found:
                after = _text(entries[-1][0])
        return await self.view(run_id)

    async def records(self, run_id: str, after: int, *, heartbeat: float | None) -> AsyncIterator[Record]:
        """The run's events after number `after` as (seq, type, JSON), live until the run ends.

        With `heartbeat`, HEARTBEAT comes whenever that many seconds pass without an event.
        """
        key, node = self._events_key(run_id), self.nodes.for_key(run_id)
        cursor = f"{after}-1" if after else "0-0"
        block: int | None = None  # the first read takes what is there without waiting
        while True:
            found = await node.xread({key: cursor}, block=block, count=500)
            entries = found[0][1] if found else []
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                seq, end = _entry_seq(entry_id)
                if not end:
                    yield seq, _text(fields[b"t"]), _text(fields[b"d"])
                    continue
                view = await self.view(run_id)  # an end is final unless the run went on since
                if view is None or is_over(view):
                    return
            if not entries:
                view = await self.view(run_id)
                if view is None or is_over(view):
                    return  # ended without an end entry (its replica vanished, or the keys expired)
                if heartbeat is not None and block is not None:
                    yield HEARTBEAT
            block = max(1, int((heartbeat if heartbeat is not None else 5.0) * 1000))


class RemoteRun:
    """A run owned by another replica, as the bus shows it: its view, its events, a way to cancel it."""

    def __init__(self, bus: RunBus, view: dict[str, Any], first_kept: int) -> None:
        self.bus = bus
        self._view = view
        self.id: str = view["run_id"]
        self.first_kept = first_kept

    @property
    def state(self) -> str:
        return str(self._view["status"])

    @property
    def ended(self) -> bool:
        return is_over(self._view)

    def view(self) -> dict[str, Any]:
        return dict(self._view)

    async def refresh(self) -> dict[str, Any]:
        self._view = await self.bus.view(self.id) or self._view
        return self.view()

    def records(self, after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[Record]:
        return self.bus.records(self.id, after, heartbeat=heartbeat)

    async def cancel(self) -> None:
        if not self.ended:
            self._view = await self.bus.cancel(self.id) or self._view
