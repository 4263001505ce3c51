"""The HTTP API's front gate: the shape of a call to an endpoint, checked before Gradio runs it.

Gradio answers a call with too few values, or a file object whose path it will not touch, with
an empty error (``{"error": null}``): a client cannot tell what it did wrong. :class:`ApiGate`
(ASGI middleware) reads the body of every call to one of the app's endpoints (REST
``/call/NAME``, ``/run/NAME``, ``/api/NAME`` and the clients' ``/queue/join``) and answers a
wrong one itself, with HTTP 422 and one line in the app's words: which value is missing or which
argument is not an uploaded file. What passes is handed to Gradio unchanged; the endpoint then
checks every value (:mod:`osprey.app.http_api`).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from osprey.app.uploads import upload_path
from osprey.core.errors import OspreyError

MAX_CALL_BYTES = 8 * 2**20  # a call's JSON body (files travel through the upload route)
_CALL = re.compile(r"^(?:/gradio_api)?/(?:call(?:/v2)?|run|api)/([^/]+)/?$")
_JOIN = re.compile(r"^(?:/gradio_api)?/queue/join/?$")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "file", "files" or "value"
    required: bool


def endpoint_params(fn: Callable) -> tuple[Param, ...]:
    """The parameters a client sends to ``fn`` (a gr.api endpoint), in order; Gradio's own
    injected ``request`` is not one of them."""
    from gradio import FileData, Request

    hints = typing.get_type_hints(fn)
    params = []
    for p in inspect.signature(fn).parameters.values():
        hint = hints.get(p.name)
        if hint is Request:
            continue
        kind = "file" if hint is FileData else "files" if hint == list[FileData] else "value"
        params.append(Param(p.name, kind, p.default is inspect.Parameter.empty))
    return tuple(params)


def check_call(api_name: str, params: tuple[Param, ...], body: Any) -> str | None:
    """What is wrong with a call's JSON ``body`` to ``api_name`` (None: nothing)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return f'/{api_name}: the body must be JSON like {{"data": [...]}}'
    required = [p for p in params if p.required]
    if len(data) < len(required):
        wanted = ", ".join(_describe(p) for p in params)
        return f"/{api_name} takes {len(params)} value(s) ({wanted}); got {len(data)}"
    for p, value in zip(params, data):
        try:
            if p.kind == "file":
                upload_path(value, p.name)
            elif p.kind == "files" and value is not None:
                if not isinstance(value, list):
                    return f"/{api_name}: {p.name} must be a list of uploaded files"
                for i, item in enumerate(value):
                    upload_path(item, f"{p.name}[{i}]")
        except OspreyError as exc:
            return f"/{api_name}: {exc}"
    return None


def _describe(p: Param) -> str:
    what = {"file": "an uploaded file", "files": "a list of uploaded files"}.get(p.kind, "a value")
    return f"{p.name}: {what}" + ("" if p.required else ", optional")


class ApiGate:
    """ASGI middleware over the app: checks calls to ``endpoints`` ({api_name: params}) with
    :func:`check_call`. ``fn_names(fn_index)`` maps a queue join's function to its api_name."""

    def __init__(
        self, app, endpoints: dict[str, tuple[Param, ...]], fn_names: Callable[[int], str | None]
    ):
        self.app, self.endpoints, self.fn_names = app, endpoints, fn_names

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        call, join = _CALL.match(path), _JOIN.match(path)
        if call is None and join is None:
            return await self.app(scope, receive, send)
        if call is not None and call.group(1) not in self.endpoints:
            return await self.app(scope, receive, send)
        body, complete = await _read_body(receive, MAX_CALL_BYTES)
        if not complete:
            return await _refuse(send, 413, "the call's body is too large (files go to /upload)")
        problem = self._problem(call.group(1) if call else None, body)
        if problem is not None:
            return await _refuse(send, 422, problem)
        return await self.app(scope, _replay(body, receive), send)

    def _problem(self, api_name: str | None, body: bytes) -> str | None:
        try:
            parsed = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return "the body must be JSON"
        if api_name is None:  # a queue join: which function?
            index = parsed.get("fn_index") if isinstance(parsed, dict) else None
            name = self.fn_names(index) if isinstance(index, int) else None
            if name not in self.endpoints:
                return None  # the page's own events, checked by their handlers
            api_name = name
        return check_call(api_name, self.endpoints[api_name], parsed)


async def _read_body(receive, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send, status: int, message: str) -> None:
    payload = json.dumps({"error": message, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})
