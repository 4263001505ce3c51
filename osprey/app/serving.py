"""Serving the demo: Gradio's launch behind the API's front gate (:mod:`osprey.app.http_gate`:
call shapes, fair shares, "restarting" while draining) and, for the page's WebAssembly threads,
cross-origin isolation headers; an upload janitor; a start-up check that missed on a busy machine
tried again; and a clean stop: SIGTERM or Ctrl-C stops new work, lets running answers finish
for up to ``--drain-seconds``, then closes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from osprey.app.fair_share import PER_VISITOR, FairShare
from osprey.app.state_janitor import StateJanitor, lifespan
from osprey.app.upload_janitor import GRACE_S, UploadJanitor, queued_events


class CrossOriginIsolation:
    """ASGI middleware: every HTTP response carries ``Cross-Origin-Opener-Policy: same-origin``
    and ``Cross-Origin-Embedder-Policy: credentialless``, which make a top-level page cross-origin
    isolated, so the page's WebAssembly decoder can run on several threads (onnxruntime-web needs
    SharedArrayBuffer). ``credentialless`` still loads cross-origin resources (without their
    cookies) where ``require-corp`` would block those that do not opt in; a browser without
    ``credentialless`` (Safari) is not isolated and runs one thread. On a Space the platform sends
    the README's ``custom_headers`` instead (:func:`in_space`). Pure ASGI: streamed responses pass
    untouched."""

    HEADERS = (
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-embedder-policy", b"credentialless"),
    )

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_isolated(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        return await self.app(scope, receive, send_isolated)


@dataclass
class Policy:
    """How the server admits calls: a visitor's fair share (``per_visitor``; ``trust_proxy``: take
    the address from ``X-Forwarded-For``), and how long uploads nobody names are kept."""

    per_visitor: int = PER_VISITOR
    trust_proxy: bool = False
    upload_grace: float = GRACE_S


@dataclass
class Serving:
    """A launched demo: its gate's state (``draining``), its upload janitor, the janitor of
    Gradio's per-session entries (run by the server's lifespan), and the stop. ``on_drain``:
    called when the drain starts, for work that would not finish in time and is lost with the
    server anyway (video tracking runs: minutes of frames)."""

    demo: Any
    janitor: UploadJanitor
    draining: bool = False
    states: StateJanitor | None = None  # made in __post_init__
    stopped: threading.Event = field(default_factory=threading.Event)
    on_drain: list[Callable[[], object]] = field(default_factory=list)

    def __post_init__(self):
        if self.states is None:
            self.states = StateJanitor(self.demo)

    def busy(self) -> int:
        """Events waiting or running in the demo's queue."""
        return len(queued_events(self.demo))

    def drain(self, seconds: float, poll: float = 0.2) -> int:
        """Stop taking new calls (the gate answers "restarting"), let what runs finish for up to
        ``seconds``, then close the server; returns how many events were still there."""
        self.draining = True
        for hook in self.on_drain:
            hook()
        deadline = time.monotonic() + seconds
        while self.busy() and time.monotonic() < deadline:
            time.sleep(poll)
        left = self.busy()
        self.janitor.stop()
        self.demo.close()
        self.stopped.set()
        return left


def serve(
    demo, launch: dict, attempts: int = 3, isolate: bool = True, policy: Policy | None = None
) -> Serving:
    """``demo.launch(**launch)`` behind :class:`~osprey.app.http_gate.ApiGate` (calls checked,
    fair shares kept, refused while draining), with the page's look (theme and style sheet, see
    :func:`~osprey.app.layout.look`) and, unless ``isolate`` is off or a Space sends the headers
    itself, with :class:`CrossOriginIsolation`'s headers; uploads are cleared by an
    :class:`~osprey.app.upload_janitor.UploadJanitor`. Returns once the server runs (Gradio's
    ``prevent_thread_lock``; :func:`wait_and_drain` blocks). Gradio gives up when its own page
    does not answer within 3 s of starting ("localhost is not accessible"), which happens on a
    busy small machine: try again rather than fail to start."""
    from starlette.middleware import Middleware

    from osprey.app.layout import look

    policy = policy or Policy()
    serving = Serving(demo, UploadJanitor(demo, grace=policy.upload_grace))
    middleware = [m for m in (_api_gate(demo, policy, serving),) if m is not None]
    if isolate and not in_space():
        middleware.append(Middleware(CrossOriginIsolation))
    options = {**look(), **launch, "prevent_thread_lock": True}
    app_kwargs = {
        "lifespan": lifespan(serving.states),
        **launch.get("app_kwargs", {}),
    }
    if middleware:
        app_kwargs["middleware"] = middleware
    options["app_kwargs"] = app_kwargs
    for attempt in range(attempts):
        try:
            demo.launch(**options)
            break
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == attempts - 1:
                raise
            print("The page did not answer within Gradio's start-up check; trying again.",
                  file=sys.stderr)  # fmt: skip
            demo.close()
    serving.janitor.start()
    return serving


def in_space() -> bool:
    """Whether the app runs on a Hugging Face Space, whose platform adds the isolation headers
    of the README's front matter (``custom_headers``) to every response: the app then sends
    none, so that each header comes once (two different COEP values would cancel each other)."""
    return bool(os.environ.get("SPACE_ID"))


def wait_and_drain(serving: Serving, drain_seconds: float) -> int:
    """Block until SIGTERM or Ctrl-C (SIGINT), then :meth:`Serving.drain`; returns the events
    the drain had to cut. Main thread only (signal handlers)."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        print(f"{name}: finishing running answers (at most {drain_seconds:g} s), then stopping.",
              file=sys.stderr)  # fmt: skip
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return serving.drain(drain_seconds)


def _api_gate(demo, policy: Policy, state: Serving):
    """The gate's middleware for ``demo`` (see osprey/app/http_gate.py); None for a demo with
    no functions."""
    from starlette.middleware import Middleware

    from osprey.app.http_api import Endpoints
    from osprey.app.http_gate import ApiGate, endpoint_params
    from osprey.app.video_api import VideoEndpoints

    names = (*Endpoints.NAMES, *VideoEndpoints.NAMES)
    fns = dict(getattr(demo, "fns", {}))
    if not fns:
        return None
    endpoints = {f.api_name: endpoint_params(f.fn) for f in fns.values()
                 if f.api_name in names}  # fmt: skip
    fair = FairShare(demo, policy.per_visitor, policy.trust_proxy, names)
    return Middleware(ApiGate, endpoints=endpoints, fns=fns, fair=fair, state=state)
