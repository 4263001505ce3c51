"""Under load nothing fails: the same photo from several clients at once, one client flooding the
queue, other visitors' sessions kept, caches and sessions within budgets, a clean stop. The app
runs on loopback with the tiny models; clients are raw REST calls (tests/support/rest.py).
SECURITY.md lists these cases with these tests."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osprey.app.budgets import MIB, plan_budgets
from osprey.app.demo import build_demo
from osprey.app.fair_share import client_address
from osprey.app.serving import Policy
from osprey.app.session import Session
from osprey.app.session_images import SessionImages
from osprey.app.uploads import upload_folder
from osprey.core.images import ImageHandle
from tests.support.rest import Rest
from tests.support.servers import serving

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo(voc) -> bytes:
    out = io.BytesIO()
    Image.fromarray(voc["rgb"]).save(out, format="PNG")
    return out.getvalue()


def _files_holding(data: bytes) -> list[Path]:
    """The uploads holding ``data`` now (the janitor may delete one while they are read)."""
    held = []
    for folder, _, names in os.walk(upload_folder()):  # os.walk skips a folder gone meanwhile
        for name in names:
            path = Path(folder, name)
            try:
                if path.read_bytes() == data:
                    held.append(path)
            except FileNotFoundError:
                continue
    return held


def _hold_answers(monkeypatch, service, release: threading.Event) -> None:
    """Answers wait for ``release`` after their first piece (the tiny model answers in
    milliseconds; a real one streams for seconds)."""
    stream = service.osprey.stream

    def held(*args, **kwargs):
        for i, piece in enumerate(stream(*args, **kwargs)):
            yield piece
            if i == 0:
                release.wait(30)

    monkeypatch.setattr(service.osprey, "stream", held)


# ---------------------------------------------------------------------------------------------
# one photo, many requests


def test_the_same_photo_from_many_clients_at_once_and_then_no_upload_left(tiny_service, voc):
    """Before: 6 of 16 calls failed ("No such file") when 4 clients sent one photo 4 times in
    parallel: the first to decode it deleted the file the others were about to read. Now every
    call is served and the janitor removes the uploads once no request names them. The photo is
    one no other test uploads (its bytes are searched for in the upload folder)."""
    out = io.BytesIO()
    Image.fromarray(voc["rgb"][:, ::-1]).save(out, format="PNG")  # mirrored: this test's own
    photo = out.getvalue()
    demo = build_demo(tiny_service)
    with serving(demo, concurrency=4, policy=Policy(upload_grace=0.5)) as url:
        results, lock = [], threading.Lock()

        def client():
            rest = Rest(url)
            for _ in range(4):
                image = rest.upload("same.png", photo)
                got = rest.call("segment", image, "[[250, 200]]", "[1]", "")
                with lock:
                    results.append(got[0])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == ["complete"] * 16
        assert _files_holding(photo), "the uploads were there while requests named them"
        deadline = time.monotonic() + 20
        while _files_holding(photo) and time.monotonic() < deadline:
            time.sleep(0.5)
            demo.osprey_serving.janitor.sweep()
        assert _files_holding(photo) == []


def test_an_upload_named_by_a_waiting_call_is_kept(tiny_service, photo, monkeypatch):
    """The janitor keeps what a queued or running event names, however old."""
    release = threading.Event()
    _hold_answers(monkeypatch, tiny_service, release)
    demo = build_demo(tiny_service)
    with serving(demo, concurrency=4, policy=Policy(upload_grace=0.0)) as url:
        rest = Rest(url)
        image = rest.upload("kept.png", photo)
        worker = threading.Thread(
            target=lambda: rest.call("describe", image, [], "", "What is here?", 0)
        )
        worker.start()
        time.sleep(1.5)
        demo.osprey_serving.janitor.sweep()
        assert Path(image["path"]).is_file()
        release.set()
        worker.join(60)
        demo.osprey_serving.janitor.sweep()
        assert not Path(image["path"]).is_file()


def test_an_upload_the_canvas_names_in_its_event_data_is_kept(tmp_path):
    """The canvas page opens an upload through its own event ("open_file"), which names the
    file in the event's data, not in the inputs: the janitor keeps it while that event waits."""
    from types import SimpleNamespace

    from osprey.app.upload_janitor import UploadJanitor

    named, other = tmp_path / "named.png", tmp_path / "other.png"
    for path in (named, other):
        path.write_bytes(b"x")
    body = SimpleNamespace(data=[None], event_data={"path": str(named)})
    queue = SimpleNamespace(
        event_queue_per_concurrency_id={
            "encode": SimpleNamespace(queue=[SimpleNamespace(data=body)])
        },
        active_jobs=[],
    )
    demo = SimpleNamespace(_queue=queue, upload_file_set={str(named), str(other)})
    assert UploadJanitor(demo, grace=0.0).sweep() == 1
    assert named.is_file() and not other.is_file()


# ---------------------------------------------------------------------------------------------
# a fair share


def test_one_client_cannot_fill_the_queue(tiny_service, photo, monkeypatch, tmp_path):
    """Before: one client's 40 detailed descriptions took every place and a second visitor's
    question timed out. Now a client (one gradio_client session) gets its share (3) and "you
    already have" beyond it, and the second visitor is served meanwhile."""
    from gradio_client import Client, handle_file

    release = threading.Event()
    _hold_answers(monkeypatch, tiny_service, release)
    image = tmp_path / "a.png"
    image.write_bytes(photo)
    with serving(build_demo(tiny_service), concurrency=64, max_size=256) as url:
        flooder = Client(url, verbose=False)
        flooder.predict(handle_file(str(image)), api_name="/session_open")
        jobs = [flooder.submit("Describe the picture in detail.", api_name="/session_ask")
                for _ in range(12)]  # fmt: skip
        other = Client(url, verbose=False)
        other.predict(handle_file(str(image)), api_name="/session_open")
        asked = other.submit("What is this?", api_name="/session_ask")
        time.sleep(2.0)
        rest = Rest(url, session_hash=flooder.session_hash)  # the flooder, as curl would call
        kind, (status, message) = rest.call("session_ask", "And one more?")
        release.set()
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(("answered", job.result(timeout=60)))
            except Exception as exc:  # the refused ones
                outcomes.append(("refused", str(exc)))
        assert isinstance(asked.result(timeout=60), str)  # the other visitor was served
    refused = [text for kind, text in outcomes if kind == "refused"]
    assert len(refused) == 9 and [k for k, _ in outcomes].count("answered") == 3
    assert all("429" in text for text in refused)  # gradio_client shows the status
    assert (kind, status) == ("http", 429) and "You already have 3 requests" in message


def test_one_whole_image_job_at_a_time(tiny_service, photo, monkeypatch):
    started, release = threading.Event(), threading.Event()
    everything = tiny_service.segment_everything

    def slow(*args, **kwargs):
        started.set()
        release.wait(30)
        return everything(*args, **kwargs)

    monkeypatch.setattr(tiny_service, "segment_everything", slow)
    with serving(build_demo(tiny_service), concurrency=8) as url:
        rest = Rest(url)
        image = rest.upload("w.png", photo)
        first = {}
        worker = threading.Thread(
            target=lambda: first.update(got=rest.call("describe_all", image, 2, 0.0, 0.0, ""))
        )
        worker.start()
        assert started.wait(30)
        kind, (status, message) = rest.call(
            "describe_all", rest.upload("w.png", photo), 2, 0, 0, ""
        )
        assert (kind, status) == ("http", 429) and "'segment everything'" in message
        release.set()
        worker.join(60)
        assert first["got"][0] == "complete"


def test_the_address_comes_from_the_proxy_only_when_trusted():
    headers = [(b"x-forwarded-for", b"6.6.6.6, 10.0.0.7"), (b"host", b"x")]
    assert client_address(("127.0.0.1", 5000), headers, trust_proxy=False) == "127.0.0.1"
    assert client_address(("127.0.0.1", 5000), headers, trust_proxy=True) == "10.0.0.7"
    assert client_address(("127.0.0.1", 5000), [], trust_proxy=True) == "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# sessions nobody else can push out


def test_a_flood_of_new_sessions_does_not_push_out_a_visitors_work(tiny_service, photo):
    """Before: 300 /session_export calls under fresh session ids pushed a visitor's session
    (with its region) out of the cap; its next export said "Upload an image first"."""
    from osprey.app.http_api import Endpoints

    with serving(build_demo(tiny_service), concurrency=4) as url:
        visitor = Rest(url)
        visitor.call("session_open", visitor.upload("v.png", photo))
        visitor.call("session_click", 250, 200, "positive")
        assert visitor.call("session_add") == ("complete", ["region1"])
        for _ in range(300):
            kind, message = Rest(url).call("session_export")
            assert kind == "error" and "call /session_open first" in message
        kind, export = visitor.call("session_export")
        assert kind == "complete" and export["regions"][0]["name"] == "region1"
    sessions = Endpoints(tiny_service).sessions
    sessions.capacity, sessions.per_address = 2, 5
    kept = sessions.get("kept", create=True, address="1.1.1.1")
    kept.image = ImageHandle(np.zeros((8, 8, 3), np.uint8), "k")
    sessions.get("empty", create=True, address="2.2.2.2")
    new = sessions.get("new", create=True, address="2.2.2.2")  # the empty one gives way
    assert sessions.get("kept") is kept
    new.image = kept.image  # now both hold an image: nobody gives way
    with pytest.raises(Exception, match="too many open sessions"):
        sessions.get("another", create=True, address="3.3.3.3")
    sessions.capacity = 100
    for i in range(4):
        sessions.get(f"s{i}", create=True, address="4.4.4.4")
    with pytest.raises(Exception, match="already has 4 open sessions"):
        sessions.per_address = 4
        sessions.get("s4", create=True, address="4.4.4.4")


# ---------------------------------------------------------------------------------------------
# memory sized to the machine


def test_budgets_follow_the_memory_left_and_the_options():
    small = plan_budgets(4 * 2**30)  # Spaces CPU basic beside the 7B in 8 bits
    assert small.caches == pytest.approx(0.2 * 4 * 2**30, rel=0.01)
    assert small.features == pytest.approx(small.caches / 2, abs=2)
    assert small.sam == pytest.approx(small.caches / 4, abs=2) == pytest.approx(small.prefix, abs=2)
    assert small.sessions == pytest.approx(0.1 * 4 * 2**30, rel=0.01)
    assert plan_budgets(0).caches >= 192 * MIB - 4 and plan_budgets(10**12).caches <= 1536 * MIB
    fixed = plan_budgets(2**30, cache_mib=100, session_mib=50)
    assert fixed.caches == pytest.approx(100 * MIB, abs=4) and fixed.sessions == 50 * MIB
    assert "as set" in fixed.describe() and "of 4.0 GiB left" in small.describe()


def test_the_app_sizes_its_caches_and_says_so(capsys):
    from osprey.app.main import parse_args
    from osprey.app.startup import build_service

    service = build_service(parse_args(["--tiny", "--cache-mib", "64", "--session-mib", "32"]))
    assert "Caches: 64 MiB as set" in capsys.readouterr().err
    assert service.osprey.images.cache.max_bytes == 32 * MIB
    assert service.osprey.generator.prefix.max_bytes == 16 * MIB
    assert service.sam._cache.max_bytes == 16 * MIB and service.images.budget == 32 * MIB
    service.osprey.generator.disable_batching()


def test_idle_sessions_give_up_their_uploads_first_and_get_them_back(voc, tmp_path):
    images = SessionImages(budget=1, folder=tmp_path)  # every upload but the newest goes to disk
    handles = []
    for flip in range(3):
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(np.rot90(voc["rgb"], flip))).save(out, "JPEG")
        handle = ImageHandle.of(out.getvalue())
        pixels = handle.rgb
        handle.release()
        handles.append((images.add(handle), pixels))
        time.sleep(0.01)
    first, second, third = (h for h, _ in handles)
    assert first.spilled and second.spilled and third.spilled is None  # the longest idle went
    assert images.nbytes == third.nbytes and first.nbytes == 0
    assert np.array_equal(first.rgb, handles[0][1])  # read back and decoded again
    assert images.add(ImageHandle.of(first.source)) is first  # one photo, one handle
    images.close()
    assert not list(tmp_path.glob("*.img"))


def test_departed_sessions_take_their_spilled_files(voc, tmp_path):
    import gc

    images = SessionImages(budget=1, folder=tmp_path)
    out = io.BytesIO()
    Image.fromarray(voc["rgb"]).save(out, "PNG")
    s = Session()
    handle = ImageHandle.of(out.getvalue())
    handle.release()
    s.image = images.add(handle)
    out2 = io.BytesIO()
    Image.fromarray(voc["rgb"][::-1].copy()).save(out2, "PNG")
    second = ImageHandle.of(out2.getvalue())
    second.release()
    images.add(second)
    assert s.image.spilled is not None and s.image.spilled.is_file()
    path = s.image.spilled
    del s, handle
    gc.collect()
    assert not path.exists()


# ---------------------------------------------------------------------------------------------
# a clean stop


def test_draining_finishes_running_answers_and_refuses_new_ones(tiny_service, photo, monkeypatch):
    release = threading.Event()
    _hold_answers(monkeypatch, tiny_service, release)
    demo = build_demo(tiny_service)
    with serving(demo, concurrency=8) as url:
        rest = Rest(url)
        rest.call("session_open", rest.upload("d.png", photo))
        answer = {}
        worker = threading.Thread(target=lambda: answer.update(got=rest.call("session_ask", "Hi?")))
        worker.start()
        time.sleep(1.0)
        running = demo.osprey_serving
        drained = {}
        drainer = threading.Thread(target=lambda: drained.update(cut=running.drain(30)))
        drainer.start()
        time.sleep(0.5)
        kind, (status, message) = Rest(url).call("session_export")
        assert (kind, status) == ("http", 503) and "restarting" in message
        release.set()
        worker.join(30)
        drainer.join(30)
        assert answer["got"][0] == "complete" and drained["cut"] == 0


def test_sigterm_stops_the_app_cleanly(tmp_path, voc):
    """``python app.py --tiny`` on SIGTERM: no new work, running answers may finish, the
    sessions' spilled files go, exit code 0."""
    from benchmarks.app_process import app_log, start_app

    proc, url = start_app(
        ["--tiny", "--drain-seconds", "5", "--session-mib", "1"], env={"TMPDIR": str(tmp_path)}
    )
    for turn in range(4):  # four different photos of about 400 KB: past the 1 MiB budget
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(np.rot90(voc["rgb"], turn))).save(out, "PNG")
        rest = Rest(url)
        assert rest.call("session_open", rest.upload("x.png", out.getvalue()))[0] == "complete"
    spilled = list(tmp_path.glob("osprey-sessions-*/*.img"))
    assert spilled, "the oldest sessions' uploads went to disk"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    err = app_log(proc)
    assert "SIGTERM: finishing running answers" in err and "Stopped." in err
    assert not any(p.exists() for p in spilled)
