"""Durable runs survive `kill -9`: real child processes killed at random points, on SQLite and
PostgreSQL, then resumed. The result must equal an uninterrupted run's, and no firing the
journal had recorded as completed may execute again (counted through a side-channel file).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import require
from tests.core import durable_shapes
from tests.infrastructure.conftest import POSTGRES_URL, _reachable, unique_name

from nanobrain.core.journal import CALL, DONE
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.journal import SqlJournalStore

REPO = Path(__file__).resolve().parents[2]
KILLS_PER_SHAPE = 5  # x 6 shapes x 2 databases = 60 kill points (a few may miss on a busy machine)


def _reset(path: Path) -> None:
    path.write_text("")


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _expected() -> dict[str, tuple[dict, int]]:
    """Each shape's outputs and side-channel line count when nothing is killed."""
    side = Path(os.environ["NB_SIDE"])
    expected = {}
    for shape in durable_shapes.SHAPES:
        _reset(side)
        outputs = await durable_shapes.build(shape).run(durable_shapes.inputs_for(shape))
        expected[shape] = (outputs, len(_lines(side)))
    return expected


def _kill_at(shape: str, url: str, schema: str, run_id: str, side: Path, lines: int) -> bool:
    """Start the shape in a child and SIGKILL it once the side channel has `lines` lines.
    Returns False when the child finished before the kill point was reached."""
    env = {**os.environ, "NB_SIDE": str(side), "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.core.durable_shapes", shape, url, schema, run_id],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_lines(side)) < lines:
            if child.poll() is not None:
                return False
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        _, err = child.communicate()
    if child.returncode == 0:
        return False  # it finished between our look at the side channel and the signal (a busy machine)
    assert child.returncode == -signal.SIGKILL, err.decode()
    return True


def _completed(store_entries: list[bytes], run_id: str) -> tuple[set[str], set[str]]:
    """Side-channel keys of the firings and of the model calls the journal recorded as completed."""
    firings, calls = set(), set()
    for blob in store_entries:
        kind, step, firing, data = pickle.loads(blob)
        if kind == DONE:
            firings.add(f"{run_id}/{step}/{firing}")
        elif kind == CALL and data[0].startswith("model:"):
            # The agent's key is model:ROUND:MESSAGES; the shape's model marks #modelMESSAGES.
            calls.add(f"{run_id}/{step}/{firing}#model{data[0].rsplit(':', 1)[1]}")
        elif kind == CALL and data[0].startswith("map item "):
            # A map's finished item: it marked under its own step name, `each[INDEX]`.
            calls.add(f"{run_id}/{step}[{data[0].rsplit(' ', 1)[1]}]/{firing}")
    return firings, calls


async def _crash_and_resume(database: str, tmp_path: Path) -> None:
    if database == "postgresql":
        require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
        url, schema = POSTGRES_URL, unique_name("nbjournal")
    else:
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}", ""
    os.environ["NB_SIDE"] = str(tmp_path / "expected.side")
    expected = await _expected()
    store = SqlJournalStore(Database(url, schema=schema or None))
    rng = random.Random(f"{database}-kills")
    kills = 0
    try:
        for shape in durable_shapes.SHAPES:
            outputs, total = expected[shape]
            for attempt in range(KILLS_PER_SHAPE):
                run_id = f"{shape}-{attempt}"
                side = tmp_path / f"{run_id}.side"
                point = rng.randint(1, total - 1)
                if not _kill_at(shape, url, schema, run_id, side, point):
                    continue
                kills += 1
                firings: set[str] = set()
                calls: set[str] = set()
                for run in [r.run_id for r in await store.runs(limit=1000) if r.run_id.startswith(run_id)]:
                    done, called = _completed(await store.entries(run), run)
                    firings |= done
                    calls |= called
                os.environ["NB_SIDE"] = str(side)
                resumed = await durable_shapes.build(shape).resume(run_id, durable=store)
                assert resumed == outputs, (shape, point)
                executed = Counter(_lines(side))
                where = f"{shape} killed at line {point}"
                for line, count in executed.items():
                    # A completed firing ran once, and so did everything inside it.
                    if line.split("#")[0] in firings:
                        assert count == 1, f"{where}: {line} of a completed firing ran {count}x"
                for key in firings:
                    if not key.endswith("/ask/1"):  # the agent step itself marks only its calls
                        assert executed[key] == 1, f"{where}: completed {key} ran {executed[key]}x"
                for key in calls:
                    assert executed[key] == 1, f"{where}: recorded model call {key} ran {executed[key]}x"
                record = await store.get(run_id)
                assert record is not None and record.status == "finished"
        planned = len(durable_shapes.SHAPES) * KILLS_PER_SHAPE
        assert kills >= 25, f"only {kills} of {planned} kills hit a live child"
    finally:
        if database == "postgresql":
            await store.database.drop_schema()
        await store.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_runs_killed_at_random_points_resume_to_the_same_result(database: str, tmp_path: Path) -> None:
    await _crash_and_resume(database, tmp_path)


@pytest.mark.slow
async def test_a_waiting_run_outlives_its_process_and_finishes_when_input_arrives(tmp_path: Path) -> None:
    """Human in the loop: a process starts a run that waits for approval and exits; a new
    process sends the input through the CLI-free Python API and the run finishes."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}"
    script = (
        "import asyncio, sys\n"
        "from nanobrain import Workflow, Step\n"
        "from tests.core.durable_shapes import store\n"
        "class Combine(Step):\n"
        "    inputs = {'question': str, 'approval': str}\n"
        "    outputs = {'answer': str}\n"
        "    async def process(self, inputs):\n"
        "        return {'answer': inputs['question'] + ' -> ' + inputs['approval']}\n"
        "def build():\n"
        "    wf = Workflow('approve', inputs={'question': str, 'approval': str}, outputs={'answer': str})\n"
        "    wf.add(Combine('combine'))\n"
        "    wf.link('inputs.question', 'combine.question')\n"
        "    wf.link('inputs.approval', 'combine.approval')\n"
        "    wf.link('combine.answer', 'outputs.answer')\n"
        "    return wf\n"
        "async def main(mode):\n"
        "    s = store(sys.argv[2], '')\n"
        "    if mode == 'start':\n"
        "        print(await build().run({'question': 'deploy?'}, durable=s, run_id='hitl'))\n"
        "    else:\n"
        "        print(await build().resume('hitl', durable=s, send={'approval': 'approved'}))\n"
        "    print((await s.get('hitl')).status)\n"
        "    await s.aclose()\n"
        "asyncio.run(main(sys.argv[1]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    outputs = []
    for mode in ("start", "send"):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, mode, url, cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        outputs.append(out.decode().split("\n")[:2])
    assert outputs == [["{}", "waiting"], ["{'answer': 'deploy? -> approved'}", "finished"]]
