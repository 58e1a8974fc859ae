"""A loopback OpenAI-compatible chat-completions server with scripted answers.

Started by the tests themselves on 127.0.0.1 (an ephemeral port); each POST to
``/v1/chat/completions`` takes the next scripted step: ``("ok", text)``, ``(status, None)``
for an HTTP error, or ``("sleep", seconds)`` to answer late. Requests are recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gateway:
    def __init__(
        self, script: list[tuple[Any, Any]], default: tuple[Any, Any] | None = None
    ) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def next_step(self) -> tuple[Any, Any]:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            if self.default is None:
                return (500, None)
            return self.default


def _handler(gw: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with gw.lock:
                gw.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
            kind, value = gw.next_step()
            if kind == "sleep":
                time.sleep(value)
                kind, value = gw.next_step()
            if kind == "ok":
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "test-model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": value},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 100,
                            "completion_tokens": 50,
                            "total_tokens": 150,
                        },
                    },
                )
            else:
                self._send(int(kind), {"error": {"message": f"scripted {kind}", "type": "test"}})

    return Handler


@contextmanager
def serve(
    script: list[tuple[Any, Any]], default: tuple[Any, Any] | None = None
) -> Iterator[Gateway]:
    gw = Gateway(script, default)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gw))
    gw.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_for_plugin(
    monkeypatch, script: list[tuple[Any, Any]], default: tuple[Any, Any] | None = None
) -> Iterator[Gateway]:
    """``serve`` plus the environment the plugin reads (gateway key and URL)."""
    with serve(script, default) as gw:
        monkeypatch.setenv("LLM_GATEWAY_KEY", "sk-loopback")
        monkeypatch.setenv("LLM_GATEWAY_URL", gw.url)
        yield gw
