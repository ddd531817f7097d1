"""Data units: memory, string, stream and file kinds; typing, subscribers, update iteration."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from nanobrain import MISSING, DataUnit, FileUnit, MemoryUnit, StreamUnit, StringUnit, UnitTypeError
from nanobrain.core.errors import StreamClosed


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Point(BaseModel):
    x: int
    y: int


# -- memory ------------------------------------------------------------------------------------


async def test_memory_unit_holds_latest_value_and_counts_versions():
    unit = MemoryUnit("count", int)
    assert unit.kind == "memory"
    assert not unit.has_value
    assert unit.version == 0
    await unit.set(1)
    await unit.set(2)
    assert unit.get() == 2
    assert unit.has_value
    assert unit.version == 2


def test_empty_unit_get_raises_lookup_error_naming_the_unit_unless_default_given():
    unit = DataUnit("answer")
    with pytest.raises(LookupError, match=r"'answer'"):
        unit.get()
    assert unit.get(42) == 42
    assert DataUnit("d", int, default=7).get() == 7
    assert repr(MISSING) == "MISSING"
    assert not MISSING


async def test_typed_set_rejects_wrong_type_with_message_naming_unit_expected_and_actual():
    unit = DataUnit("age", int)
    with pytest.raises(UnitTypeError) as info:
        await unit.set("not a number")
    message = str(info.value)
    assert "'age'" in message
    assert "int" in message
    assert "str" in message
    assert info.value.unit == "age"
    assert info.value.value_type == "str"
    assert isinstance(info.value, TypeError)
    assert not unit.has_value, "a rejected value must not be stored"
    assert unit.version == 0


async def test_typed_set_for_generic_and_model_types():
    numbers = DataUnit("numbers", list[int])
    await numbers.set([1, 2, 3])
    assert numbers.get() == [1, 2, 3]
    with pytest.raises(UnitTypeError, match=r"'numbers'.*list"):
        await numbers.set(["a", "b"])

    point = DataUnit("point", Point)
    await point.set({"x": 1, "y": 2})
    assert point.get() == Point(x=1, y=2)
    with pytest.raises(UnitTypeError, match=r"'point' expects Point, got dict"):
        await point.set({"x": "far"})


async def test_float_unit_accepts_int_and_untyped_unit_accepts_anything():
    ratio = DataUnit("ratio", float)
    await ratio.set(3)
    assert ratio.get() == 3.0
    assert type(ratio.get()) is float
    anything = DataUnit("anything")
    for value in (1, "x", None, [1], object):
        await anything.set(value)
        assert anything.get() is value


def test_default_is_validated_too():
    with pytest.raises(UnitTypeError, match=r"'limit'"):
        DataUnit("limit", int, default="many")


async def test_subscribers_are_called_in_subscription_order_after_the_value_is_stored():
    unit = DataUnit("u")
    calls: list[tuple[str, object, object]] = []
    unit.subscribe(lambda v: calls.append(("first", v, unit.get())))
    unit.subscribe(lambda v: calls.append(("second", v, unit.get())))
    await unit.set("a")
    unit.set_nowait("b")
    assert calls == [("first", "a", "a"), ("second", "a", "a"), ("first", "b", "b"), ("second", "b", "b")]


async def test_unsubscribe_stops_notifications_and_is_idempotent():
    unit = DataUnit("u")
    seen: list[int] = []
    unsubscribe = unit.subscribe(seen.append)
    await unit.set(1)
    unsubscribe()
    unsubscribe()
    await unit.set(2)
    assert seen == [1]


async def test_subscriber_may_set_another_unit_without_deadlock():
    source = DataUnit("source", int)
    doubled = DataUnit("doubled", int)
    seen: list[int] = []
    source.subscribe(lambda v: doubled.set_nowait(v * 2))
    doubled.subscribe(seen.append)
    await asyncio.wait_for(source.set(5), timeout=5)
    await asyncio.wait_for(source.set(6), timeout=5)
    assert doubled.get() == 12
    assert seen == [10, 12]


async def test_subscriber_setting_the_same_unit_keeps_every_subscriber_in_order():
    unit = DataUnit("counter", int)
    first: list[int] = []
    second: list[int] = []

    def bump(value: int) -> None:
        first.append(value)
        if value < 4:
            unit.set_nowait(value + 1)

    unit.subscribe(bump)
    unit.subscribe(second.append)
    await asyncio.wait_for(unit.set(1), timeout=5)
    assert unit.get() == 4
    assert first == [1, 2, 3, 4]
    # Every subscriber sees every value exactly once and in the order the values were set.
    assert second == [1, 2, 3, 4]


async def test_subscriber_added_during_notification_sees_only_later_values():
    unit = DataUnit("u")
    late: list[int] = []
    added = False

    def add_late(_: int) -> None:
        nonlocal added
        if not added:
            added = True
            unit.subscribe(late.append)

    unit.subscribe(add_late)
    await unit.set(1)
    await unit.set(2)
    assert late == [2]


async def test_updates_iterator_sees_every_value_none_skipped():
    unit = DataUnit("u", int)
    updates = unit.updates()
    received: list[int] = []

    async def consume() -> None:
        async for value in updates:
            received.append(value)
            if len(received) == 100:
                return

    consumer = asyncio.create_task(consume())
    for i in range(100):
        unit.set_nowait(i)  # no yield between sets: the iterator must buffer, not sample
        if i % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(consumer, timeout=5)
    assert received == list(range(100))
    await updates.aclose()
    await unit.set(100)
    assert received == list(range(100))


async def test_clone_gives_an_empty_unit_with_the_same_configuration():
    unit = DataUnit("u", int, default=3)
    await unit.set(9)
    twin = unit.clone("twin")
    assert twin.name == "twin"
    assert twin.type is int
    assert twin.get() == 3
    assert twin.version == 0
    with pytest.raises(UnitTypeError):
        await twin.set("x")


# -- string ------------------------------------------------------------------------------------


async def test_string_unit_appends_and_only_holds_text():
    text = StringUnit("log")
    assert text.kind == "string"
    seen: list[str] = []
    text.subscribe(seen.append)
    await text.append("Hello")
    await text.append(", world")
    assert text.get() == "Hello, world"
    assert seen == ["Hello", "Hello, world"]
    with pytest.raises(UnitTypeError, match=r"'log'"):
        await text.set(12)
    with pytest.raises(UnitTypeError, match=r"'log'"):
        await text.append(5)
    assert text.get() == "Hello, world"


# -- stream ------------------------------------------------------------------------------------


async def test_stream_unit_delivers_every_item_in_order():
    stream = StreamUnit("s", int, maxsize=8)
    assert stream.kind == "stream"
    received: list[int] = []

    async def consume() -> None:
        async for item in stream:
            received.append(item)

    consumer = asyncio.create_task(consume())
    for i in range(50):
        await stream.set(i)
    stream.close()
    await asyncio.wait_for(consumer, timeout=5)
    assert received == list(range(50))


async def test_stream_set_waits_when_buffer_is_full_and_producers_are_served_in_call_order():
    stream = StreamUnit("s", maxsize=2)
    await stream.set("a")
    await stream.set("b")
    assert len(stream) == 2
    producers = []
    for item in ("c", "d", "e"):
        producers.append(asyncio.create_task(stream.set(item)))
        await settle(2)
    await settle()
    assert not any(p.done() for p in producers), "set must wait while the buffer is full"
    assert len(stream) == 2

    assert await stream.next() == "a"
    await settle()
    # One slot opened: exactly the longest-waiting producer got in.
    assert [p.done() for p in producers] == [True, False, False]
    rest = [await stream.next() for _ in range(4)]
    assert rest == ["b", "c", "d", "e"]
    await asyncio.wait_for(asyncio.gather(*producers), timeout=5)


async def test_stream_newcomer_cannot_overtake_waiting_producers():
    stream = StreamUnit("s", maxsize=1)
    await stream.set(1)
    waiting = asyncio.create_task(stream.set(2))
    await settle()
    assert not waiting.done()
    assert await stream.next() == 1  # admits 2, buffer is full again
    late = asyncio.create_task(stream.set(3))
    await settle()
    assert waiting.done()
    assert not late.done()
    assert [await stream.next(), await stream.next()] == [2, 3]
    await late


async def test_stream_set_nowait_refuses_when_full():
    stream = StreamUnit("s", maxsize=1)
    stream.set_nowait(1)
    with pytest.raises(asyncio.QueueFull, match=r"'s'"):
        stream.set_nowait(2)
    assert await stream.next() == 1
    assert len(stream) == 0


async def test_cancelled_waiting_producer_item_is_not_delivered():
    stream = StreamUnit("s", maxsize=1)
    await stream.set("kept")
    cancelled = asyncio.create_task(stream.set("dropped by its producer"))
    after = asyncio.create_task(stream.set("after"))
    await settle()
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert cancelled.cancelled()
    assert await stream.next() == "kept"
    assert await stream.next() == "after"
    await after
    assert len(stream) == 0


async def test_stream_close_drains_then_stops_and_refuses_new_items():
    stream = StreamUnit("s", int, maxsize=4)
    await stream.set(1)
    await stream.set(2)
    stream.close()
    with pytest.raises(StreamClosed, match=r"'s'"):
        await stream.set(3)
    with pytest.raises(StreamClosed):
        stream.set_nowait(3)
    assert [item async for item in stream] == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await stream.next()


async def test_stream_close_wakes_a_waiting_reader():
    stream = StreamUnit("s")
    reader = asyncio.create_task(stream.next())
    await settle()
    assert not reader.done()
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, timeout=5)


async def test_stream_validates_items_and_notifies_subscribers():
    stream = StreamUnit("s", int, maxsize=4)
    seen: list[int] = []
    stream.subscribe(seen.append)
    await stream.set(1)
    with pytest.raises(UnitTypeError, match=r"'s'"):
        await stream.set("x")
    await stream.set(2)
    assert seen == [1, 2]
    assert [await stream.next(), await stream.next()] == [1, 2]


def test_stream_maxsize_must_be_positive():
    with pytest.raises(ValueError, match=r"'s'.*maxsize"):
        StreamUnit("s", maxsize=0)


async def test_stream_clone_keeps_maxsize_but_not_items():
    stream = StreamUnit("s", int, maxsize=3)
    await stream.set(1)
    twin = stream.clone("t")
    assert isinstance(twin, StreamUnit)
    assert twin.maxsize == 3
    assert len(twin) == 0


# -- file --------------------------------------------------------------------------------------


async def test_file_unit_json_roundtrip_and_value_survives_restart(tmp_path):
    path = tmp_path / "state" / "memory.json"
    unit = FileUnit("memory", path=path)
    assert unit.kind == "file"
    assert not unit.has_value
    await unit.set({"turns": ["hi", "hello"], "count": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == {"turns": ["hi", "hello"], "count": 2}

    restarted = FileUnit("memory", path=path)
    assert restarted.get() == {"turns": ["hi", "hello"], "count": 2}


async def test_file_unit_text_and_bytes_formats(tmp_path):
    text = FileUnit("notes", path=tmp_path / "notes.txt", format="text")
    await text.set("héllo\nwörld")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "héllo\nwörld"
    assert FileUnit("notes", path=tmp_path / "notes.txt", format="text").get() == "héllo\nwörld"

    blob = FileUnit("blob", path=tmp_path / "blob.bin", format="bytes")
    blob.set_nowait(b"\x00\x01\xff")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01\xff"
    assert FileUnit("blob", path=tmp_path / "blob.bin", format="bytes").get() == b"\x00\x01\xff"


async def test_file_unit_typed_model_survives_restart(tmp_path):
    path = tmp_path / "point.json"
    unit = FileUnit("point", Point, path=path)
    await unit.set(Point(x=1, y=2))
    assert json.loads(path.read_text()) == {"x": 1, "y": 2}
    assert FileUnit("point", Point, path=path).get() == Point(x=1, y=2)


async def test_file_unit_rejects_bad_format_and_values_that_do_not_fit_it(tmp_path):
    with pytest.raises(ValueError, match=r"'cfg'.*yaml"):
        FileUnit("cfg", path=tmp_path / "cfg.yaml", format="yaml")  # type: ignore[arg-type]
    text = FileUnit("notes", path=tmp_path / "notes.txt", format="text")
    with pytest.raises(TypeError, match=r"'notes'.*int"):
        await text.set(5)
    blob = FileUnit("blob", path=tmp_path / "blob.bin", format="bytes")
    with pytest.raises(TypeError, match=r"'blob'.*str"):
        await blob.set("text")
    data = FileUnit("data", path=tmp_path / "data.json")
    with pytest.raises(TypeError, match=r"not JSON serializable"):
        await data.set({"obj": object()})
    assert not (tmp_path / "notes.txt").exists()
    assert not (tmp_path / "blob.bin").exists()
    assert not (tmp_path / "data.json").exists()
    assert not data.has_value


def test_file_unit_with_an_unreadable_file_names_the_unit_and_the_file(tmp_path):
    broken = tmp_path / "memory.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"file unit 'memory': cannot read .*memory\.json.* as json"):
        FileUnit("memory", path=broken)
    latin = tmp_path / "notes.txt"
    latin.write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"file unit 'notes': cannot read .*notes\.txt.* as text"):
        FileUnit("notes", path=latin, format="text")
    assert FileUnit("blob", path=latin, format="bytes").get() == b"caf\xe9"


async def test_file_unit_write_is_atomic_old_value_intact_when_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    unit = FileUnit("state", path=path)
    await unit.set({"v": 1})
    seen: list[object] = []
    unit.subscribe(seen.append)

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match=r"disk gone"):
        await unit.set({"v": 2})
    monkeypatch.undo()

    assert json.loads(path.read_text()) == {"v": 1}
    assert unit.get() == {"v": 1}, "the in-memory value must not change when the write failed"
    assert seen == [], "subscribers must not hear about a value that was not stored"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no temp file may be left behind"

    await unit.set({"v": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert FileUnit("state", path=path).get() == {"v": 3}
    assert seen == [{"v": 3}]


async def test_file_unit_validates_before_writing(tmp_path):
    path = tmp_path / "n.json"
    unit = FileUnit("n", int, path=path)
    with pytest.raises(UnitTypeError, match=r"'n'"):
        await unit.set("many")
    assert not path.exists()
    await unit.set(4)
    assert json.loads(path.read_text()) == 4


async def test_concurrent_file_sets_land_in_call_order(tmp_path: Path) -> None:
    for trial in range(20):
        path = tmp_path / f"v{trial}.json"
        unit = FileUnit("f", path=path)
        twin = unit.clone()  # a run's copy writes the same file
        seen: list[int] = []
        unit.subscribe(seen.append)
        twin.subscribe(seen.append)
        await asyncio.gather(*((unit if i % 2 else twin).set(i) for i in range(6)))
        assert seen == list(range(6))
        assert json.loads(path.read_text()) == 5
