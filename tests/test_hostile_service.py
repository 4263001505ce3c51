"""A hostile (or just hurried) user of the service: names that would corrupt questions, edits
while an answer streams, two edits of one session at once, a new image mid-answer, odd
vocabularies. SECURITY.md lists these cases with these tests."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from osprey.app import top_classes
from osprey.app.session import Session
from osprey.app.uploads import UploadError, read_upload, upload_folder
from osprey.core.errors import ServiceError


@pytest.fixture()
def session(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    for mask in voc["masks"][:3]:
        tiny_service.add_mask(s, mask)
    return s


# ---------------------------------------------------------------------------------------------
# names that cannot corrupt a question


def test_names_are_unique_case_aside(tiny_service, session):
    tiny_service.rename(session, 0, "dog")
    for name in ("Dog", "DOG", " dog "):
        with pytest.raises(ServiceError, match="already named"):
            tiny_service.rename(session, 1, name)
    tiny_service.rename(session, 0, "Dog")  # the same region may change its own case


@pytest.mark.parametrize("name", ["a", "the", "on", "it", "What", "region", "them"])
def test_words_questions_are_made_of_are_refused_with_a_suggestion(tiny_service, session, name):
    with pytest.raises(ServiceError, match=r"questions are made of.*e\.g\."):
        tiny_service.rename(session, 0, name)


def test_names_are_read_as_whole_words_and_the_user_is_told(tiny_service, session):
    tiny_service.rename(session, 0, "dog")
    tiny_service.rename(session, 1, "hot dog")
    replies = list(tiny_service.ask(session, "Is the Dog next to the hot dog, or the hotdog?"))
    question, _ = session.history[-1]
    assert question == "Is the region1 next to the region2, or the hotdog?"
    assert "Read 'dog' as region1, 'hot dog' as region2." in replies[-1].note


def test_a_region_that_does_not_exist_gets_a_note(tiny_service, session):
    replies = list(tiny_service.ask(session, "What is region99 doing?"))
    assert replies[-1].done and "This image has no region99" in replies[-1].note
    assert "region1, region2, region3" in replies[-1].note


# ---------------------------------------------------------------------------------------------
# state that follows the session


def _slow_stream(tiny_service, session, question, started: threading.Event):
    """Consume ``ask`` in a thread that signals once the first words arrived."""
    out = {}

    def run():
        replies = []
        for reply in tiny_service.ask(session, question, max_new_tokens=0):
            replies.append(reply)
            if reply.text:
                started.set()
        out["replies"] = replies

    return threading.Thread(target=run), out


def _hold_stream(monkeypatch, tiny_service, release: threading.Event):
    """Make the tiny model's stream wait for ``release`` after its first piece (a real model
    streams for seconds; the tiny one is done in milliseconds)."""
    stream = tiny_service.osprey.stream

    def held(*args, **kwargs):
        for i, piece in enumerate(stream(*args, **kwargs)):
            yield piece
            if i == 0:
                release.wait(10)

    monkeypatch.setattr(tiny_service.osprey, "stream", held)


def test_a_new_image_mid_answer_starts_a_new_chat(tiny_service, session, voc, monkeypatch):
    release, started = threading.Event(), threading.Event()
    _hold_stream(monkeypatch, tiny_service, release)
    worker, out = _slow_stream(tiny_service, session, "Describe region1.", started)
    worker.start()
    assert started.wait(10)
    tiny_service.open_image(session, voc["rgb"][::-1].copy())
    release.set()
    worker.join(10)
    assert session.history == [] and session.regions == []
    assert "not kept in the chat" in out["replies"][-1].note


@pytest.mark.parametrize("edit", ["delete", "undo", "clear_regions"])
def test_an_edit_mid_answer_stops_it_and_the_chat_restarts(
    tiny_service, session, monkeypatch, edit
):
    list(tiny_service.ask(session, "What is region3?"))
    assert len(session.history) == 1
    release, started = threading.Event(), threading.Event()
    _hold_stream(monkeypatch, tiny_service, release)
    worker, out = _slow_stream(tiny_service, session, "Tell me about region3 and region2", started)
    worker.start()
    assert started.wait(10)
    args = (session, 0) if edit == "delete" else (session,)
    getattr(tiny_service, edit)(*args)
    release.set()
    worker.join(10)
    assert session.history == [], "an answer about renumbered regions was kept"
    assert "not kept in the chat" in out["replies"][-1].note


def test_a_rename_mid_answer_keeps_it(tiny_service, session, monkeypatch):
    release, started = threading.Event(), threading.Event()
    _hold_stream(monkeypatch, tiny_service, release)
    worker, _ = _slow_stream(tiny_service, session, "What is region1?", started)
    worker.start()
    assert started.wait(10)
    tiny_service.rename(session, 0, "dog")
    release.set()
    worker.join(10)
    assert [q for q, _ in session.history] == ["What is region1?"]


def test_concurrent_edits_of_one_session_are_serialised(tiny_service, session, monkeypatch):
    """A rename and a delete of the page at the same moment: before, the rename could index a
    region the delete had just removed, or the view read a half-changed list (an IndexError
    shown as "Error" with no text)."""
    import gradio as gr

    from osprey.app import service as service_module
    from osprey.app.handlers import edit_handler

    inside, overlaps, lock = [0], [], threading.Lock()
    real = service_module.replace

    def slow_replace(*args, **kwargs):  # widen the window in which two edits could interleave
        with lock:
            inside[0] += 1
            overlaps.append(inside[0])
        threading.Event().wait(0.01)
        with lock:
            inside[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "replace", slow_replace)
    rename = edit_handler(tiny_service, lambda s: tiny_service.rename(s, 2, "cup"))
    delete = edit_handler(tiny_service, lambda s: tiny_service.delete(s, 0), chat=True)
    errors = []

    def run(handler):
        try:
            handler(session)
        except gr.Error as exc:  # the app's words ("There is no region3."): fine
            if "went wrong" in str(exc):
                errors.append(exc)
        except Exception as exc:  # anything else is the bug
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in [rename, delete] * 10]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and max(overlaps) == 1


# ---------------------------------------------------------------------------------------------
# the smaller ones


def test_top_k_must_be_a_whole_number(tiny_service, session):
    with pytest.raises(ServiceError, match="whole number"):
        top_classes.classify(tiny_service.osprey, session, "coco", top_k=2.9)
    assert len(top_classes.classify(tiny_service.osprey, session, "coco", top_k=2.0)[0][1]) == 2


def test_a_vocabulary_file_with_a_byte_order_mark(tmp_path):
    from osprey.inference.vocabularies import read_file, resolve

    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffdog\ncat\n".encode())
    assert read_file(path).classes == (("dog",), ("cat",))
    assert resolve("\ufeffdog, cat").classes == (("dog",), ("cat",))


# ---------------------------------------------------------------------------------------------
# uploads, read by the endpoint itself (behind the HTTP gate, in case a route bypasses it)


def test_read_upload_takes_only_regular_files_in_the_upload_folder(tmp_path):
    import os

    folder = upload_folder() / "read-upload-test"
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "ok.bin"
    good.write_bytes(b"x" * 10)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    fifo = folder / "pipe.bin"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    try:
        assert read_upload({"path": str(good)}) == b"x" * 10
        cases = [(str(good), "not a path"), ({"path": str(outside)}, "not uploaded"),
                 ({"path": str(folder / ".." / ".." / outside)}, "not uploaded"),
                 ({"path": str(fifo)}, "not a regular"), ({"path": str(folder / "gone")}, "no longer"),
                 ({"nope": 1}, "not a path"), (None, "not a path")]  # fmt: skip
        for value, message in cases:
            with pytest.raises(UploadError, match=message) as info:
                read_upload(value, "image")
            assert str(outside.parent) not in str(info.value)
        with pytest.raises(UploadError, match="above the limit"):
            read_upload({"path": str(good)}, "image", max_bytes=5)
    finally:
        fifo.unlink(missing_ok=True)


def test_the_endpoints_refuse_paths_even_without_the_gate(tiny_service):
    from types import SimpleNamespace

    from osprey.app.http_api import Endpoints

    api = Endpoints(tiny_service)
    request = SimpleNamespace(session_hash="no-gate")
    with pytest.raises(ServiceError, match="uploaded"):
        api.session_open("/etc/passwd", request)
    with pytest.raises(ServiceError, match="not uploaded"):
        api.session_open({"path": "/etc/passwd"}, request)
    assert len(api.sessions) == 0  # nothing was opened, not even an empty session


def test_the_app_caps_malloc_arenas_unless_the_operator_set_them():
    """Freed memory of worker threads goes back to the system (osprey/core/memory.py); run in a
    child process, as the cap is process-wide."""
    import os
    import subprocess
    import sys

    code = "from osprey.core.memory import limit_malloc_arenas as f; print(f())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = {"args": [sys.executable, "-c", code], "capture_output": True, "text": True,
           "cwd": Path(__file__).resolve().parents[1]}  # fmt: skip
    assert subprocess.run(**run, env=env).stdout.strip() == "True"
    env["MALLOC_ARENA_MAX"] = "4"
    assert subprocess.run(**run, env=env).stdout.strip() == "False"


def test_answers_land_on_their_regions_after_edits_meanwhile(tiny_service, session, monkeypatch):
    """A describe runs while the visitor renames region 3 and deletes region 1: the answers go
    to the regions they were asked about, under their new numbers; none lands on a stranger."""
    describe = tiny_service.osprey.describe

    def edited_meanwhile(*args, **kwargs):
        answers = describe(*args, **kwargs)
        tiny_service.rename(session, 2, "cup")
        tiny_service.delete(session, 0)
        return ["first", "second", "third"][: len(answers)]

    monkeypatch.setattr(tiny_service.osprey, "describe", edited_meanwhile)
    out = tiny_service.describe(session, "category")
    assert out == [("region1", "second"), ("region2 (cup)", "third")]
    assert [r.category for r in session.regions] == ["second", "third"]
