"""A scripted OpenAI-compatible chat server on loopback, for tests: a real HTTP server on a
free port (bind port 0) in a thread, answering POST /v1/chat/completions with whatever the
test's script returns for each request, and recording every request body."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Response:
    """What the server sends: a status, a body (dict: JSON-encoded; str: sent as is),
    headers, and a delay before answering (for timeouts)."""

    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Script = Callable[[dict[str, Any]], Response]


def chat(content: str, top_logprobs: list[tuple[str, float]] | None = None) -> Response:
    """A well-formed completion with `content`, optionally with first-token log-probs."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": "stop"}
    if top_logprobs is not None:
        tops = [{"token": t, "logprob": lp} for t, lp in top_logprobs]
        choice["logprobs"] = {"content": [{"token": tops[0]["token"], "logprob": tops[0]["logprob"],
                                           "top_logprobs": tops}]}
    return Response(body={"id": "x", "object": "chat.completion", "choices": [choice]})


class FakeOpenAI:
    """Use as a context manager; `url` is the base_url (…/v1)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body,
                                           "auth": self.headers.get("Authorization")})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    resp = Response(404, {"error": "not found"})
                else:
                    resp = outer.script(body)
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                data = resp.body if isinstance(resp.body, str) else json.dumps(resp.body)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data.encode())))
                    self.end_headers()
                    self.wfile.write(data.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r["body"] for r in self.requests]
