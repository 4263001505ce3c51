"""A fair share of the queue for every visitor.

Admission (the batching engine's ``--max-active`` / ``--queue-size``) bounds what the server
takes on, not who takes it: one script sending 64 requests used every place, and a second
visitor's question timed out. :class:`FairShare` counts a visitor's requests already waiting or
running in Gradio's queue, by lane, and refuses one more beyond its share, before Gradio queues
it (the HTTP gate asks it for every call; :mod:`osprey.app.http_gate`):

* answers (the LLM) and new images (SAM's and Osprey's encoders): ``per_visitor`` each;
* clicks and edits: four times that;
* a whole-image job ("segment everything", "describe all"): one.

A visitor is its session (a browser tab, or an API client's session). An API client can open
any number of sessions, so API calls also count against the client's address, which holds
``ADDRESS_SHARE`` visitors' shares (several clients behind one address are usual: an office, a
load test). Behind a proxy every address is the proxy's: with ``trust_proxy`` the address is the
last entry of ``X-Forwarded-For`` (the one the proxy itself added; a client can write the
others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from osprey.app.upload_janitor import queued_events

PER_VISITOR = 3  # answers, and new images, waiting or running per visitor
ADDRESS_SHARE = 8  # an API client's address: this many visitors' shares (several clients, NAT)
WHOLE_IMAGE = "osprey_whole_image"  # the attribute that marks a whole-image job


def whole_image(fn: Callable) -> Callable:
    """Mark a handler or endpoint as a whole-image job (one per visitor at a time); the mark
    survives ``functools.wraps``."""
    setattr(fn, WHOLE_IMAGE, True)
    return fn


def client_address(client: Any, headers: Mapping[str, str] | Iterable, trust_proxy: bool) -> str:
    """The visitor's address: the socket's peer, or with ``trust_proxy`` the address the proxy
    put last in ``X-Forwarded-For``. ``headers``: a mapping, or ASGI's (name, value) byte pairs."""
    if trust_proxy:
        forwarded = _header(headers, "x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    host = getattr(client, "host", None) or (
        client[0] if isinstance(client, (tuple, list)) else None
    )
    return str(host or "unknown")


def _header(headers: Mapping[str, str] | Iterable, name: str) -> str | None:
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        return headers.get(name)
    for key, value in headers:
        if key.decode("latin-1").lower() == name:
            return value.decode("latin-1")
    return None


class FairShare:
    """Counts and refuses (see the module docstring). ``api_names``: the endpoints an API client
    calls (counted by address); every other function is the page's (counted by session)."""

    def __init__(
        self, demo, per_visitor: int = PER_VISITOR, trust_proxy: bool = False,
        api_names: Iterable[str] = (),
    ):  # fmt: skip
        self.demo, self.per_visitor, self.trust_proxy = demo, per_visitor, trust_proxy
        self.api_names = frozenset(api_names)
        self._joining: list[
            tuple
        ] = []  # admitted calls not yet in the queue: (lane, session, address, api)

    def lane(self, fn) -> str:
        """The kind of work ``fn`` (a Gradio BlockFunction) does."""
        if getattr(getattr(fn, "fn", None), WHOLE_IMAGE, False):
            return "whole image"
        return fn.concurrency_id if fn.concurrency_id in ("answer", "encode") else "other"

    def limit(self, lane: str) -> int:
        return {"whole image": 1, "answer": self.per_visitor, "encode": self.per_visitor}.get(
            lane, 4 * self.per_visitor
        )

    @contextmanager
    def joining(self, fn, session_hash: str | None, address: str) -> Iterator[None]:
        """Count an admitted call of ``fn`` from now until the block ends (by then its join has
        put it in Gradio's queue), so calls that arrive together cannot all slip in before the
        first is queued. Enter it right after :meth:`refuse` said None, with no ``await``
        between: the server's event loop decides one call at a time."""
        api = getattr(fn, "api_name", None) in self.api_names
        mark = (self.lane(fn), session_hash, address, api)
        self._joining.append(mark)
        try:
            yield
        finally:
            self._joining.remove(mark)

    def refuse(self, fn, session_hash: str | None, address: str) -> str | None:
        """Why one more call of ``fn`` by this visitor is refused now (None: it is not)."""
        lane, limit = self.lane(fn), self.limit(self.lane(fn))
        api = getattr(fn, "api_name", None) in self.api_names
        by_session = sum(1 for m in self._joining if m[0] == lane and m[1] == session_hash)
        by_address = sum(1 for m in self._joining if m[0] == lane and m[3] and m[2] == address)
        for event in queued_events(self.demo):
            if self.lane(event.fn) != lane:
                continue
            by_session += event.session_hash == session_hash
            if api and getattr(event.fn, "api_name", None) in self.api_names:
                request = getattr(event, "request", None)
                there = client_address(
                    getattr(request, "client", None), getattr(request, "headers", {}) or {},
                    self.trust_proxy,
                )  # fmt: skip
                by_address += there == address
        if by_session < limit and (not api or by_address < ADDRESS_SHARE * limit):
            return None
        if lane == "whole image":
            return (
                "You already have a 'segment everything' or 'describe all' running; wait for it "
                "to finish, then try again."
            )
        held = by_session if by_session >= limit else by_address
        return (
            f"You already have {held} requests of this kind waiting or running; wait for one to "
            "finish (or stop it), then try again."
        )
