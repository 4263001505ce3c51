"""A loopback OpenAI-compatible chat server that replays recorded replies.

``POST /v1/chat/completions`` answers with ``responder(request_json)`` (a string) as the first
choice, with token counts from a whitespace split. Every request is recorded; ``fail_next``
queues error answers (429, 500, ...) that come before the next real ones, with a
``retry-after-ms`` header so clients retry at once.

    with ReplayServer(lambda request: "Question 1: ...") as server:
        ChatAPI(server.base_url, "replay").chat([...])
        assert server.count == 1
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]


def last_user_message(request: dict[str, Any]) -> str:
    """The content of the request's last user message (what the recorded reply answers)."""
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        status = self.server.record(request)
        if status is not None:
            error = {"error": {"message": f"injected {status}", "type": "injected"}}
            self._send(status, error, {"retry-after-ms": "5"})
            return
        self._send(200, _completion(request, self.server.responder(request)))


def _completion(request: dict[str, Any], text: str) -> dict[str, Any]:
    prompt = sum(len(m["content"].split()) for m in request["messages"])
    reply = len(text.split())
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "replay"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": reply,
            "total_tokens": prompt + reply,
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder: Responder):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self._errors: list[int] = []
        self._lock = threading.Lock()

    def record(self, request: dict[str, Any]) -> int | None:
        """Log the request; return the status of a queued error to answer with, if any."""
        with self._lock:
            if self._errors:
                self.failures.append(request)
                return self._errors.pop(0)
            self.requests.append(request)
            return None


class ReplayServer:
    """Context manager running :class:`_Server` on a free loopback port in a thread."""

    def __init__(self, responder: Responder):
        self._server = _Server(responder)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        """Requests answered with a reply (injected errors not included)."""
        return len(self._server.requests)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._server.requests

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Requests answered with an injected error."""
        return self._server.failures

    def fail_next(self, *statuses: int) -> None:
        """Answer the next ``len(statuses)`` requests with these error statuses, in order."""
        with self._server._lock:
            self._server._errors.extend(statuses)

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
