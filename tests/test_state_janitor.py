"""Gradio's per-session entries (a copy of every component's config, about 110 KiB each) leave
once they hold nothing: API clients and idle untouched tabs after two minutes, closed tabs after
fifteen, never a session with work in the queue or a state to keep."""

from __future__ import annotations

import asyncio
import copy
import datetime
import io
import time

import gradio as gr
import pytest
from PIL import Image

from osprey.app.demo import build_demo
from osprey.app.state_janitor import CLOSED_IDLE_S, IDLE_S, StateJanitor, lifespan
from tests.support.rest import Rest
from tests.support.servers import serving


def _later(seconds: float) -> datetime.datetime:
    return datetime.datetime.now() + datetime.timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(out, "PNG")
    return out.getvalue()


def test_api_clients_entries_go_once_idle_and_the_clients_still_work(tiny_service, photo):
    demo = build_demo(tiny_service)
    with serving(demo) as url:
        holder, janitor = demo.state_holder, demo.osprey_serving.states
        before = len(holder.session_data)
        clients = [Rest(url) for _ in range(12)]
        for rest in clients:
            got = rest.call("segment", rest.upload("p.png", photo), "[[10, 10]]", "[1]", "")
            assert got[0] == "complete", got
        mine = {rest.session_hash for rest in clients}
        assert mine <= set(holder.session_data), "Gradio keeps an entry per client"
        assert len(holder.session_data) >= before + 12

        pending = demo._queue.pending_event_ids_session
        for _ in range(100):  # Gradio forgets a finished call's event just after answering
            if not any(pending.get(h) for h in mine):
                break
            time.sleep(0.05)
        assert janitor.sweep(now=_later(IDLE_S / 2)) == 0, "recently used entries stay"
        gone = janitor.sweep(now=_later(IDLE_S + 1))
        assert gone >= 12 and not mine & set(holder.session_data)

        again = clients[0].call("segment", clients[0].upload("p.png", photo), "[[5, 5]]", "[1]", "")
        assert again[0] == "complete", "a client that comes back gets a fresh entry"
        assert clients[0].session_hash in holder.session_data


def test_entries_with_a_state_a_changed_component_or_queued_work_stay(tiny_service):
    demo = build_demo(tiny_service)
    holder = demo.state_holder
    state_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.State))
    other_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox))

    holder["with-state"][state_id]  # Gradio makes the state's value on first use
    assert holder["with-state"].state_data
    holder["changed"][other_id] = copy.copy(demo.blocks[other_id])  # a handler's update
    holder["busy"]
    holder["untouched"]
    janitor = StateJanitor(demo)
    demo._queue.pending_event_ids_session["busy"] = {"event-1"}
    try:
        gone = janitor.sweep(now=_later(IDLE_S + 1))
    finally:
        demo._queue.pending_event_ids_session.pop("busy")
    assert gone == 1 and janitor.forgotten == 1
    assert {"with-state", "changed", "busy"} <= set(holder.session_data)
    assert "untouched" not in holder.session_data


def test_a_closed_tab_goes_after_its_grace_and_its_states_are_deleted(tiny_service, monkeypatch):
    demo = build_demo(tiny_service)
    holder = demo.state_holder
    state_id, state = next((k, b) for k, b in demo.blocks.items() if isinstance(b, gr.State))
    deleted = []
    monkeypatch.setattr(state, "delete_callback", lambda value: deleted.append(value))
    holder["tab"][state_id] = "the session"
    holder["tab"].is_closed = True
    janitor = StateJanitor(demo)

    assert janitor.sweep(now=_later(IDLE_S + 1)) == 0, "a closed tab is kept for its grace"
    assert "tab" in holder.session_data and not deleted
    assert janitor.sweep(now=_later(CLOSED_IDLE_S + 1)) == 1
    assert "tab" not in holder.session_data and deleted == ["the session"]


def test_the_lifespan_sweeps_on_the_servers_loop_and_stops_with_it():
    calls = []

    class Counting(StateJanitor):
        def sweep(self, now=None):
            calls.append(asyncio.get_running_loop())
            return 0

    janitor = Counting(demo=None, interval=0.01)

    async def server():
        async with lifespan(janitor)(None):
            await asyncio.sleep(0.2)
        count = len(calls)
        await asyncio.sleep(0.05)
        return asyncio.get_running_loop(), count

    loop, count = asyncio.run(server())
    assert count >= 3 and all(c is loop for c in calls)
    assert len(calls) == count, "the sweep stops with the server"
