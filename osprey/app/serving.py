"""Serving the demo: Gradio's launch behind the API's front gate
(:mod:`osprey.app.http_gate`) and, for the page's WebAssembly threads, cross-origin isolation
headers; a start-up check that missed on a busy machine is tried again."""

from __future__ import annotations

import os
import sys


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


def serve(demo, launch: dict, attempts: int = 3, isolate: bool = True) -> None:
    """``demo.launch(**launch)`` with the page's look (theme and style sheet, see
    :func:`~osprey.app.layout.look`), behind :class:`~osprey.app.http_gate.ApiGate` (calls to
    the API checked before Gradio runs them) and, unless ``isolate`` is off or a Space sends the
    headers itself, with :class:`CrossOriginIsolation`'s headers. Gradio gives up when its own
    page does not answer within 3 s of starting ("localhost is not accessible"), which happens on
    a busy small machine: try again rather than fail to start."""
    from starlette.middleware import Middleware

    from osprey.app.layout import look

    middleware = [m for m in (_api_gate(demo),) if m is not None]
    if isolate and not in_space():
        middleware.append(Middleware(CrossOriginIsolation))
    options = {**look(), **launch}
    if middleware:
        options["app_kwargs"] = {**launch.get("app_kwargs", {}), "middleware": middleware}
    for attempt in range(attempts):
        try:
            demo.launch(**options)
            return
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == attempts - 1:
                raise
            print("The page did not answer within Gradio's start-up check; trying again.",
                  file=sys.stderr)  # fmt: skip
            demo.close()


def in_space() -> bool:
    """Whether the app runs on a Hugging Face Space, whose platform adds the isolation headers
    of the README's front matter (``custom_headers``) to every response: the app then sends
    none, so that each header comes once (two different COEP values would cancel each other)."""
    return bool(os.environ.get("SPACE_ID"))


def _api_gate(demo):
    """The gate's middleware for ``demo``'s API endpoints (see osprey/app/http_gate.py); None for a
    demo without them."""
    from starlette.middleware import Middleware

    from osprey.app.http_api import Endpoints
    from osprey.app.http_gate import ApiGate, endpoint_params

    fns = dict(getattr(demo, "fns", {}))
    endpoints = {f.api_name: endpoint_params(f.fn) for f in fns.values()
                 if f.api_name in Endpoints.NAMES}  # fmt: skip
    if not endpoints:
        return None
    return Middleware(ApiGate, endpoints=endpoints,
                      fn_names=lambda index: getattr(fns.get(index), "api_name", None))  # fmt: skip
