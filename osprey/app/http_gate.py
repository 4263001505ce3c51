"""The HTTP API's front gate: the shape of a call to an endpoint, checked before Gradio runs it.

Gradio answers a call with too few values, or a file object whose path it will not touch, with
an empty error (``{"error": null}``): a client cannot tell what it did wrong. :class:`ApiGate`
(ASGI middleware) reads the body of every call that would join Gradio's queue (REST
``/call/NAME``, ``/run/NAME``, ``/api/NAME`` and the clients' ``/queue/join``) and answers a
wrong one itself, in one line in the app's words: HTTP 422 for a call of the wrong shape (which
value is missing, which argument is not an uploaded file), 429 for one beyond the visitor's fair
share (:mod:`osprey.app.fair_share`), 503 (409 for a queue join, whose page shows the text) while
the server drains to stop. What passes is handed
to Gradio unchanged; the endpoint then checks every value (:mod:`osprey.app.http_api`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from osprey.app.fair_share import client_address
from osprey.app.uploads import upload_path
from osprey.core.errors import OspreyError

MAX_CALL_BYTES = 8 * 2**20  # a call's JSON body (files travel through the upload route)
RESTARTING = "The server is restarting; try again in a minute."
# Gradio lists a finished call among the running ones until its clean-up has run: a client that
# sends its next call the moment it reads the last answer could be refused for that one. Count
# again after these pauses (seconds) before refusing.
RECOUNT_PAUSES = (0.0, 0.05, 0.1, 0.25)
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
    """ASGI middleware over the app, asked about every call that would join Gradio's queue (a
    REST call to a named function, or a client's queue join):

    * while ``state.draining`` (the server is stopping), every new call gets HTTP 503 with
      ``Retry-After`` (a queue join 409: Gradio's page shows the text of a 409, and its own
      "busy" line for a 503);
    * a call to one of ``endpoints`` ({api_name: params}) of the wrong shape gets 422
      (:func:`check_call`);
    * a call beyond the visitor's fair share gets 429 (:class:`~osprey.app.fair_share.FairShare`).

    ``fns``: the demo's functions by index (what a queue join names); ``fair``: the policy, or
    None for none."""

    def __init__(self, app, endpoints: dict[str, tuple[Param, ...]], fns: dict, fair=None,
                 state=None):  # fmt: skip
        self.app, self.endpoints, self.fns, self.fair = app, endpoints, fns, fair
        self.state = state
        self._by_name = {f.api_name: f for f in fns.values() if getattr(f, "api_name", None)}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        call, join = _CALL.match(path), _JOIN.match(path)
        if call is None and join is None:
            return await self.app(scope, receive, send)
        if getattr(self.state, "draining", False):
            return await _refuse(send, 503 if call else 409, RESTARTING, retry_after=60)
        body, complete = await _read_body(receive, MAX_CALL_BYTES)
        if not complete:
            return await _refuse(send, 413, "the call's body is too large (files go to /upload)")
        fn, parsed, problem = self._shape(call.group(1) if call else None, body)
        if problem is not None:
            return await _refuse(send, 422, problem)
        if fn is None or self.fair is None:
            return await self.app(scope, _replay(body, receive), send)
        address = client_address(scope.get("client"), scope.get("headers", []),
                                 self.fair.trust_proxy)  # fmt: skip
        session = parsed.get("session_hash")
        for pause in RECOUNT_PAUSES:  # a call that just finished is still listed for a moment
            await asyncio.sleep(pause)
            refused = self.fair.refuse(fn, session, address)
            if refused is None:
                break
        if refused is not None:
            return await _refuse(send, 429, refused)
        with self.fair.joining(fn, session, address):
            return await self.app(scope, _replay(body, receive), send)

    def _shape(self, api_name: str | None, body: bytes) -> tuple[Any, dict, str | None]:
        """(the function called, the parsed body, what is wrong with the call's shape)."""
        try:
            parsed = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return None, {}, "the body must be JSON"
        parsed = parsed if isinstance(parsed, dict) else {}
        if api_name is None:  # a queue join: which function?
            index = parsed.get("fn_index")
            fn = self.fns.get(index) if isinstance(index, int) else None
        else:
            fn = self._by_name.get(api_name)
        name = getattr(fn, "api_name", None)
        problem = check_call(name, self.endpoints[name], parsed) if name in self.endpoints else None
        return fn, parsed, problem


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


async def _refuse(send, status: int, message: str, retry_after: int | None = None) -> None:
    payload = json.dumps({"error": message, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]  # fmt: skip
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
