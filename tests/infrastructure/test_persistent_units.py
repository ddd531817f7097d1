"""Persistent data units: values and stream items that survive a restart, in runs and from YAML."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from tests.conftest import require
from tests.infrastructure.conftest import POSTGRES_URL, REDIS_URL, _reachable, unique_name

import nanobrain as nb
from nanobrain.core.data_units import UNIT_KINDS
from nanobrain.core.errors import ConfigError
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.kv import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore, SQLKeyValueStore
from nanobrain.infrastructure.data.persistent_units import (
    PersistentStreamUnit,
    PersistentUnit,
    UnitNotLoaded,
    load_persistent,
)
from nanobrain.infrastructure.security import DecryptionError, Encryptor, generate_key

REPO = Path(__file__).resolve().parents[2]


class Profile(BaseModel):
    name: str
    visits: int = 0


def double(x: int) -> int:
    """Used by the YAML workflow below."""
    return x * 2


async def _drop_redis_prefix(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyValueStore]:
    """SQL on SQLite and on PostgreSQL (own schema), and Redis (own prefix)."""
    if request.param == "redis":
        require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
        prefix = unique_name() + ":"
        redis_store = RedisKeyValueStore(REDIS_URL, prefix=prefix)
        yield redis_store
        await redis_store.aclose()
        await _drop_redis_prefix(prefix)
        return
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'units.db'}")
    else:
        require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
        db = Database(POSTGRES_URL, schema=unique_name())
    yield SQLKeyValueStore(db, "units")
    if db.dialect == "postgresql":
        await db.drop_schema()
    await db.aclose()


# -- PersistentUnit ------------------------------------------------------------------------
async def test_value_survives_a_new_unit_over_the_same_store(store: KeyValueStore) -> None:
    unit = PersistentUnit("profile", Profile, store=store, key="user/1/profile")
    assert await unit.aget(None) is None  # nothing stored yet
    await unit.set({"name": "Ada", "visits": 3})  # validated (and coerced) like any typed unit
    assert unit.get() == Profile(name="Ada", visits=3)

    reopened = PersistentUnit("profile", Profile, store=store, key="user/1/profile")
    with pytest.raises(UnitNotLoaded, match=r"'profile' \(key 'user/1/profile'\) is not loaded yet"):
        reopened.get()
    assert await reopened.load() == Profile(name="Ada", visits=3)
    assert reopened.get() == Profile(name="Ada", visits=3) and reopened.has_value
    assert await store.get("user/1/profile") == b'{"name": "Ada", "visits": 3}'


async def test_default_until_something_is_stored_and_delete() -> None:
    store = MemoryKeyValueStore()
    unit = PersistentUnit("count", int, store=store, key="count", default=0)
    assert await unit.aget() == 0 and await store.get("count") is None  # the default is not written
    await unit.set(5)
    assert await unit.delete() is True
    assert unit.get() == 0 and await store.get("count") is None


async def test_subscribers_see_only_durable_values() -> None:
    store = MemoryKeyValueStore()
    unit = PersistentUnit("u", store=store, key="k")
    seen: list[tuple[Any, bytes | None]] = []
    unit.subscribe(lambda value: seen.append((value, store._data.get("k", (None,))[0])))
    await unit.set([1, 2])
    await unit.set({"a": None})
    assert seen == [([1, 2], b"[1, 2]"), ({"a": None}, b'{"a": null}')]
    with pytest.raises(TypeError, match=r"use `await unit.set\(value\)`"):
        unit.set_nowait(1)
    with pytest.raises(TypeError, match="stores JSON; cannot store object"):
        await unit.set(object())
    assert unit.get() == {"a": None} and unit.version == 2


async def test_concurrent_sets_reach_the_store_in_order(store: KeyValueStore) -> None:
    unit = PersistentUnit("n", int, store=store, key="n")
    await asyncio.gather(*(unit.set(i) for i in range(20)))
    fresh = PersistentUnit("n", int, store=store, key="n")
    assert await fresh.load() == 19 == unit.get()


async def test_clones_share_store_key_and_value() -> None:
    store = MemoryKeyValueStore()
    unit = PersistentUnit("u", int, store=store, key="k")
    await unit.load()
    copy = unit.clone("u.copy")
    assert (copy.store, copy.key, copy.name) == (store, "k", "u.copy")
    await copy.set(7)
    assert unit.get() == 7  # a value set through a copy (a run's unit) is what the unit reads


async def test_encrypted_at_rest_and_the_wrong_key_is_clear() -> None:
    store = MemoryKeyValueStore()
    key = generate_key()
    unit = PersistentUnit("secret", str, store=store, key="s", encryptor=Encryptor(key))
    await unit.set("swordfish")
    raw = await store.get("s")
    assert raw is not None and b"swordfish" not in raw and raw.startswith(b"NBE")
    assert await PersistentUnit("secret", str, store=store, key="s", encryptor=Encryptor(key)).load() == "swordfish"
    stranger = PersistentUnit("secret", str, store=store, key="s", encryptor=Encryptor(generate_key()))
    with pytest.raises(DecryptionError, match="key id does not match"):
        await stranger.load()


async def test_a_workflow_run_writes_through_and_a_new_process_reads_it(store: KeyValueStore) -> None:
    @nb.step
    def double_it(x: int) -> int:
        return x * 2

    def build() -> nb.Workflow:
        total = PersistentUnit("total", int, store=store, key="wf/total")
        last_input = PersistentUnit("x", int, store=store, key="wf/x")
        wf = nb.Workflow("doubler", inputs={"x": last_input}, outputs={"total": total}, steps=[double_it])
        wf.link("inputs.x", "double_it.x")
        wf.link("double_it.result", "outputs.total")
        return wf

    wf = build()
    assert await wf.run(x=21) == {"total": 42}
    assert wf.outputs["total"].get() == 42  # the declared unit reads what the run stored
    assert await wf.run(x=5) == {"total": 10}

    again = build()  # as another process would build it
    assert await load_persistent(again) == 2
    assert again.outputs["total"].get() == 10 and again.inputs["x"].get() == 5


# -- PersistentStreamUnit ------------------------------------------------------------------
async def test_stream_items_survive_and_replay_in_order(store: KeyValueStore) -> None:
    events = PersistentStreamUnit("events", dict, store=store, key="events")
    for i in range(5):
        assert await events.append({"n": i}) == i
    assert events.get() == {"n": 4}

    reopened = PersistentStreamUnit("events", dict, store=store, key="events")
    assert await reopened.load() == 5 and reopened.get() == {"n": 4}
    assert await reopened.items() == [{"n": i} for i in range(5)]
    assert await reopened.items(2, 4) == [{"n": 2}, {"n": 3}]
    await reopened.set({"n": 5})
    assert [item["n"] async for item in reopened.replay(start=4)] == [4, 5]


async def test_a_reader_resumes_after_its_committed_position(store: KeyValueStore) -> None:
    log = PersistentStreamUnit("log", str, store=store, key="log")
    for word in ["a", "b", "c", "d"]:
        await log.append(word)
    reader = log.reader("worker")
    assert [await reader.next(), await reader.next()] == ["a", "b"]
    assert await reader.commit() == 2
    assert await reader.next() == "c"  # read but not committed: delivered again after a restart

    restarted = PersistentStreamUnit("log", str, store=store, key="log").reader("worker")
    assert await restarted.position() == 2
    assert [await restarted.next(), await restarted.next()] == ["c", "d"]
    assert await log.reader("other").next() == "a"  # each reader has its own position


async def test_a_reader_waits_for_new_items_and_stops_after_close() -> None:
    log = PersistentStreamUnit("log", int, store=MemoryKeyValueStore(), key="log")
    received: list[int] = []

    async def consume() -> None:
        async for item in log.reader():
            received.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for i in range(3):
        await log.append(i)
    log.close()
    await asyncio.wait_for(task, timeout=5)
    assert received == [0, 1, 2]


async def test_an_unacknowledged_append_is_replaced_not_replayed() -> None:
    store = MemoryKeyValueStore()
    log = PersistentStreamUnit("log", str, store=store, key="log")
    await log.append("kept")
    # A crash after writing an item but before its count: the item was never acknowledged.
    await store.set("log/items/000000000001", b'"half-written"')
    fresh = PersistentStreamUnit("log", str, store=store, key="log")
    assert await fresh.items() == ["kept"]
    assert await fresh.append("next") == 1
    assert await fresh.items() == ["kept", "next"]


async def test_stream_outputs_of_runs_accumulate_durably(store: KeyValueStore) -> None:
    @nb.step
    def shout(text: str) -> str:
        return text.upper()

    def build() -> nb.Workflow:
        history = PersistentStreamUnit("history", str, store=store, key="shouts")
        wf = nb.Workflow("shouter", inputs={"text": str}, outputs={"history": history}, steps=[shout])
        wf.link("inputs.text", "shout.text")
        wf.link("shout.result", "outputs.history")
        return wf

    wf = build()
    for word in ["one", "two", "three"]:
        await wf.run(text=word)
    assert await build().outputs["history"].items() == ["ONE", "TWO", "THREE"]  # type: ignore[attr-defined]


# -- YAML ----------------------------------------------------------------------------------
def _yaml(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "doubler.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: doubler
            inputs:
              x: int
            outputs:
              total:
                type: int
                kind: persistent
                store: "{store_url}"
                key: doubler/total
              seen:
                type: int
                kind: persistent_stream
                store: "{store_url}"
                key: doubler/seen
            steps:
              double:
                function: tests.infrastructure.test_persistent_units:double
            links:
              - {{from: inputs.x, to: double.x}}
              - {{from: double.result, to: outputs.total}}
              - {{from: double.result, to: outputs.seen}}
            """
        )
    )
    return path


RUN_IN_NEW_PROCESS = """
import asyncio, sys
import nanobrain as nb
from nanobrain.infrastructure.data.persistent_units import load_persistent

async def main():
    wf = nb.load_workflow(sys.argv[1])
    if sys.argv[2] == "run":
        print((await wf.run(x=int(sys.argv[3])))["total"])
    else:
        await load_persistent(wf)
        print(wf.outputs["total"].get(), await wf.outputs["seen"].items())
    for unit in wf.outputs.values():
        await unit.store.aclose()

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield "sqlite+aiosqlite:///state/doubler.db"  # relative to the YAML file
        return
    if request.param == "postgresql":
        require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
        schema = unique_name()
        yield f"{POSTGRES_URL}?schema={schema}"
        db = Database(POSTGRES_URL, schema=schema)
        await db.drop_schema()
        await db.aclose()
        return
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    prefix = unique_name() + ":"
    yield f"{REDIS_URL}?prefix={prefix}"
    await _drop_redis_prefix(prefix)


def _process(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RUN_IN_NEW_PROCESS, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_yaml_persistent_units_survive_a_new_process(tmp_path: Path, store_url: str) -> None:
    path = _yaml(tmp_path, store_url)
    assert _process(str(path), "run", "21") == "42"
    assert _process(str(path), "run", "4") == "8"
    assert _process(str(path), "read") == "8 [42, 8]"

    wf = nb.load_workflow(path)  # and in this process too
    total = wf.outputs["total"]
    assert isinstance(total, PersistentUnit) and total.key == "doubler/total"
    assert wf.outputs["seen"].store is total.store  # units naming one URL share one store
    await load_persistent(wf)
    assert total.get() == 8
    await total.store.aclose()
    if store_url.startswith("sqlite"):
        assert (tmp_path / "state" / "doubler.db").exists()


def test_yaml_errors_name_the_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: bad
            outputs:
              a: {kind: persistent, key: k}
              b: {kind: persistent, store: "sqlite+aiosqlite:///x.db"}
              c: {kind: persistent, store: "ftp://nowhere", key: k}
              d: {kind: persistent, store: "memory://", key: k, encrypted: true}
            """
        )
    )
    monkeypatch.delenv("NANOBRAIN_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("NANOBRAIN_ENCRYPTION_KEY_FILE", raising=False)
    with pytest.raises(ConfigError) as caught:
        nb.load_workflow(path)
    text = str(caught.value)
    assert "outputs.a" in text and "needs a store URL" in text
    assert "outputs.b" in text and "needs a key" in text
    assert "outputs.c.store" in text and "unsupported store URL 'ftp://nowhere'" in text
    assert "outputs.d.encrypted" in text and "NANOBRAIN_ENCRYPTION_KEY" in text


async def test_encrypted_yaml_unit_uses_the_environment_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOBRAIN_ENCRYPTION_KEY", generate_key())
    path = tmp_path / "enc.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: enc
            inputs: {x: int}
            outputs:
              s: {type: int, kind: persistent, store: "memory://", key: s, encrypted: true}
            steps:
              double: {function: tests.infrastructure.test_persistent_units:double}
            links:
              - {from: inputs.x, to: double.x}
              - {from: double.result, to: outputs.s}
            """
        )
    )
    wf = nb.load_workflow(path)
    unit = wf.outputs["s"]
    assert isinstance(unit, PersistentUnit) and isinstance(unit.encryptor, Encryptor)
    assert await wf.run(x=21) == {"s": 42}
    sealed = await unit.store.get("s")
    assert sealed is not None and sealed.startswith(b"NBE") and sealed != b"42"
    assert unit.encryptor.decrypt(sealed, b"s") == b"42"


def test_the_kinds_are_registered() -> None:
    assert UNIT_KINDS["persistent"] is PersistentUnit
    assert UNIT_KINDS["persistent_stream"] is PersistentStreamUnit
    assert PersistentUnit.awaits_set and PersistentStreamUnit.awaits_set and not nb.DataUnit.awaits_set


async def test_a_run_that_does_not_send_a_persistent_input_keeps_its_stored_value() -> None:
    store = MemoryKeyValueStore()
    state = PersistentUnit("state", str, store=store, key="st", default="initial")
    workflow = nb.Workflow("w", inputs={"x": int, "state": state}, outputs={"state": str})
    workflow.add(nb.FunctionStep(lambda x, state: state, name="echo"))
    workflow.link("inputs.x", "echo.x")
    workflow.link("inputs.state", "echo.state")
    workflow.link("echo.result", "outputs.state")
    assert await workflow.run(x=1, state="saved") == {"state": "saved"}
    assert await workflow.run(x=2) == {"state": "saved"}  # not overwritten with the default
    assert await PersistentUnit("state", str, store=store, key="st").initial_value() == "saved"
