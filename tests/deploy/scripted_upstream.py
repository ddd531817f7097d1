"""A tiny OpenAI-compatible chat server with a scripted answer, for `nanobrain serve` in another process.

`nanobrain serve` takes its model from NANOBRAIN_MODEL; pointed at this server
(`openai-compatible:scripted@http://127.0.0.1:PORT/v1`) the replicas answer deterministically, and
the test sees exactly which messages each replica sent upstream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def answer(messages: list[dict[str, Any]]) -> str:
    """What the scripted model says: how many user turns it saw, and the last one."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return f"turn {len(users)}: you said {users[-1]!r}" if users else "nothing to answer"


class Upstream:
    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[dict[str, Any]] = []


@contextmanager
def scripted_upstream() -> Iterator[Upstream]:
    """Serve on 127.0.0.1 (a free port) until the block ends."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                           .encode(), "application/json")  # fmt: skip
            else:
                self._send(404, b"{}", "application/json")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if not self.path.endswith("/chat/completions"):
                self._send(404, b"{}", "application/json")
                return
            seen.append(body)
            text = answer(body.get("messages", []))
            created = int(time.time())
            usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
            base = {"id": "chatcmpl-scripted", "created": created, "model": "scripted"}
            if not body.get("stream"):
                message = {"role": "assistant", "content": text}
                done = {**base, "object": "chat.completion", "usage": usage,
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
                self._send(200, json.dumps(done).encode(), "application/json")
                return
            chunk = {**base, "object": "chat.completion.chunk"}
            events = [
                {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
                {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**chunk, "choices": [], "usage": usage})
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(200, payload.encode(), "text/event-stream")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream = Upstream(f"http://127.0.0.1:{server.server_address[1]}/v1")
    upstream.requests = seen
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
