"""A hostile client of the HTTP API, through raw REST calls (what ``curl`` sends) against the app
on loopback with the tiny models: files only from the upload route, sizes checked from headers
before decoding, every wrong argument answered in the app's words with no server path, no
exception name, no echo of a huge value. SECURITY.md lists these cases with these tests."""

from __future__ import annotations

import io
import os
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

from osprey.app.demo import build_demo
from osprey.app.guard import guarded
from tests.conftest import REPO
from tests.support.data import header_only_png
from tests.support.rest import Rest
from tests.support.servers import serving

REPO_PHOTO = REPO / "examples" / "coffee.jpg"  # a photo on the server's disk
FILE_ENDPOINTS = {  # endpoint -> (values of a valid call, index of its file argument)
    "session_open": (["<file>"], 0),
    "segment": (["<file>", "[[10, 10]]", "[1]", ""], 0),
    "describe": (["<file>", [], "category", "", 2], 0),
    "classify": (["<file>", [], "coco", 3], 0),
    "describe_all": (["<file>", 2, 0.0, 0.0, ""], 0),
}
LEAKS = re.compile(r"/tmp/|/proc/|/etc/|/work/|gradio/|Error:|Traceback|KeyError|TypeError")


@pytest.fixture(scope="module")
def url(tiny_service):
    with serving(build_demo(tiny_service), concurrency=4, max_file_size=20_000_000) as address:
        yield address


@pytest.fixture()
def rest(url):
    client = Rest(url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def photo_png(voc) -> bytes:
    out = io.BytesIO()
    Image.fromarray(voc["rgb"]).save(out, format="PNG")
    return out.getvalue()


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def _refused(result, *words: str) -> str:
    """The message of a refused call, checked to hold ``words`` and no server detail."""
    kind, payload = result
    assert kind in ("error", "http"), f"expected a refusal, got {result}"
    message = payload[1] if kind == "http" else payload
    assert isinstance(message, str) and message, f"no message: {result}"
    assert not LEAKS.search(message), f"the message leaks server details: {message}"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------
# files come only from the upload route


@pytest.mark.parametrize("endpoint", sorted(FILE_ENDPOINTS))
def test_a_plain_path_never_opens_a_server_file(rest, endpoint):
    """Before the fix: /session_open with the string path of a photo on the server's disk
    segmented it and returned its size."""
    values, _ = FILE_ENDPOINTS[endpoint]
    for path in (str(REPO_PHOTO), "/etc/passwd", "/nonexistent/x.png"):
        data = [path if v == "<file>" else v for v in values]
        _refused(rest.call(endpoint, *data), "uploaded")


@pytest.mark.parametrize("endpoint", sorted(FILE_ENDPOINTS))
def test_a_file_object_naming_a_server_file_is_refused(rest, endpoint):
    values, _ = FILE_ENDPOINTS[endpoint]
    for file in ({"path": str(REPO_PHOTO)},
                 {"path": str(REPO_PHOTO), "meta": {"_type": "gradio.FileData"}},
                 {"path": "/proc/self/fd/0", "meta": {"_type": "gradio.FileData"}},
                 {"path": "../../../../etc/passwd"}):  # fmt: skip
        data = [file if v == "<file>" else v for v in values]
        _refused(rest.call(endpoint, *data), "not uploaded to this server")


def test_masks_must_be_uploads_too(rest, photo_png):
    image = rest.upload("photo.png", photo_png)
    for masks in ([str(REPO_PHOTO)], ["abc"], [{"foo": 1}], [{"path": str(REPO_PHOTO)}], "x"):
        message = _refused(rest.call("describe", image, masks, "category", "", 2))
        assert "masks" in message


def test_a_pipe_or_link_in_the_upload_folder_is_refused_without_blocking(rest):
    """Reading never blocks: a FIFO in the upload folder (a server that kept one there) is not
    a regular file; a link out of the folder is not an upload."""
    from osprey.app.uploads import upload_folder

    folder = upload_folder() / "hostile-test"
    folder.mkdir(parents=True, exist_ok=True)
    fifo, link = folder / "pipe.png", folder / "link.png"
    for p in (fifo, link):
        p.unlink(missing_ok=True)
    os.mkfifo(fifo)
    link.symlink_to(REPO_PHOTO)
    try:
        start = time.monotonic()
        _refused(rest.call("session_open", {"path": str(fifo)}), "not a regular")
        _refused(rest.call("session_open", {"path": str(link)}), "not uploaded")
        assert time.monotonic() - start < 20
    finally:
        fifo.unlink(missing_ok=True)
        link.unlink(missing_ok=True)


def test_an_empty_call_gets_the_apps_words(rest):
    for endpoint in FILE_ENDPOINTS:
        message = _refused(rest.call(endpoint), "takes", "got 0")
        assert "image" in message
    _refused(rest.call("segment", raw={"data": "nope"}), "JSON")


# ---------------------------------------------------------------------------------------------
# sizes from headers, before decoding


def test_a_mask_of_another_size_is_refused_from_its_header(rest, photo_png):
    image = rest.upload("photo.png", photo_png)
    mask = rest.upload("mask.png", header_only_png(13370, 13370))
    message = _refused(rest.call("describe", image, [mask], "category", "", 2))
    assert "mask 1 is 13370x13370, the image 500x375" in message


def test_a_one_bit_bomb_mask_is_refused(rest, photo_png):
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")
    image, mask = rest.upload("photo.png", photo_png), rest.upload("bomb.png", out.getvalue())
    _refused(rest.call("classify", image, [mask], "coco", 2), "mask 1")


# ---------------------------------------------------------------------------------------------
# the app's words for every wrong argument


def test_wrong_types_name_the_argument(rest, photo_png):
    image = rest.upload("photo.png", photo_png)
    deep = "[" * 5000 + "]" * 5000
    cases = [
        ("segment", [image, deep, "", ""], "points is nested too deeply"),
        ("segment", [image, 5, "", ""], "points must be JSON"),
        ("describe", [image, [], "category", "", "5"], "max_new_tokens must be a whole number"),
        ("describe", [image, [], "category", 5, 0], "question must be text"),
        ("describe_all", [image, 2, "abc", 0.0, ""], "pred_iou_thresh must be a number"),
        ("describe_all", [image, 2.5, 0.0, 0.0, ""], "points_per_side must be a whole number"),
        ("classify", [image, [], "coco", 2.9], "top_k must be a whole number"),
        ("classify", [image, None, 5, 3], "vocabulary must be text"),
    ]
    for endpoint, data, message in cases:
        _refused(rest.call(endpoint, *data), message)


def test_session_calls_check_their_arguments(rest, photo_png):
    assert rest.call("session_open", rest.upload("photo.png", photo_png))[0] == "complete"
    _refused(rest.call("session_click", "abc", 1, "positive"), "x must be a finite number")
    message = _refused(rest.call("session_click", 1e308, 1, "positive"), "outside")
    assert "1e+308" in message and len(message) < 200
    _refused(rest.call("session_click", 5, 5, "sideways"), "Unknown click mode")
    _refused(rest.call("session_ask", None), "Type a question")
    _refused(rest.call("session_ask", 5), "question must be text")


def test_boxes_must_be_ordered_and_inside_the_image(rest, photo_png):
    image = rest.upload("photo.png", photo_png)
    _refused(rest.call("segment", image, "", "", "[480, 390, 120, 40]"), "x0 < x1")
    _refused(rest.call("segment", image, "", "", "[-1e308, -1e308, 1e308, 1e308]"), "inside")
    kind, (_, info) = rest.call("segment", image, "", "", "[120, 40, 480, 370]")
    assert kind == "complete" and info["area"] > 0


def test_a_tiny_image_is_refused(rest):
    image = rest.upload("dot.png", _png(np.zeros((1, 1, 3), np.uint8)))
    _refused(rest.call("segment", image, "[[0, 0]]", "[1]", ""), "too small")


def test_clicks_per_mask_are_capped(rest, photo_png):
    rest.call("session_open", rest.upload("photo.png", photo_png))
    for i in range(64):
        assert rest.call("session_click", 10 + i, 10, "positive")[0] == "complete"
    _refused(rest.call("session_click", 100, 100, "positive"), "At most 64 clicks")


def test_an_unexpected_failure_gets_an_incident_id_not_its_text(tiny_service, caplog):
    """The last line of defence: anything not meant for the user is logged with an id, and
    the user sees that id, not the exception."""
    boom = guarded(lambda: {}["secret /tmp/x"])
    with caplog.at_level("ERROR", logger="osprey.app"), pytest.raises(Exception) as info:
        boom()
    message = str(info.value)
    incident = re.search(r"incident ([0-9a-f]{8})", message).group(1)
    assert "KeyError" not in message and "/tmp" not in message
    assert incident in caplog.text and "KeyError" in caplog.text


def test_the_server_keeps_serving(rest, photo_png):
    """Runs after the hostile calls above: a normal call still works, from another thread too."""
    image = rest.upload("photo.png", photo_png)
    out = {}

    def segment():
        out["result"] = rest.call("segment", image, "[[250, 200]]", "[1]", "")

    worker = threading.Thread(target=segment)
    worker.start()
    worker.join(60)
    kind, (_, info) = out["result"]
    assert kind == "complete" and info["area"] > 0
