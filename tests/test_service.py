"""The app's service layer with the tiny models: the whole user flow, isolation, caches, errors."""

import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from osprey.app import drawing
from osprey.app.service import RegionChat, ServiceError, Session
from osprey.app.session import to_model_names, to_user_names
from osprey.core.masks import decode_rle


def _with_regions(service: RegionChat, voc, n: int) -> Session:
    s = Session()
    service.open_image(s, voc["rgb"])
    for i in range(n):
        service.add_mask(s, voc["masks"][i])
    return s


def test_upload_click_add_ask_answer(tiny_service, voc):
    s = Session()
    service = tiny_service
    enc0, vis0 = service.sam.stats.encodes, service.osprey.images.calls
    service.open_image(s, voc["rgb"])
    service.click(s, 250, 200)
    assert s.prediction is not None and len(s.prediction.candidates) == 3
    scores = [c.score for c in s.prediction.candidates]
    assert scores == sorted(scores, reverse=True)
    service.choose_candidate(s, 2)
    chosen = s.prediction.candidates[2].mask
    service.click(s, 60, 40, "negative")  # refines: the previous logits and both points go to SAM
    assert [p[2] for p in s.points] == [1, 0]
    s.prediction = type(s.prediction)(s.prediction.candidates, s.prediction.logits)
    service.add_mask(s, chosen)
    answers = service.describe(s, "category")
    assert [name for name, _ in answers] == ["region1"] and s.regions[0].category == answers[0][1]
    chunks = list(service.ask(s, "What is region1?"))
    assert chunks and s.history == [("What is region1?", chunks[-1].text)]
    # one SAM encode and one vision encode for the image, however many clicks and questions
    assert service.sam.stats.encodes - enc0 <= 1 and service.osprey.images.calls - vis0 <= 1
    assert drawing.render(s).shape == voc["rgb"].shape


def test_box_prompt_and_region_list_editing(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    tiny_service.click(s, 100, 80, "box")
    assert s.prediction is None and s.box_corner == (100, 80)
    tiny_service.click(s, 300, 250, "box")
    assert s.box == (100, 80, 300, 250) and s.prediction is not None
    for i in range(3):
        tiny_service.add_mask(s, voc["masks"][i])
    tiny_service.rename(s, 1, "chair")
    assert s.names() == ["region1", "region2 (chair)", "region3"]
    s.history = [("q", "a")]
    tiny_service.delete(s, 0)
    assert (
        s.names() == ["region1 (chair)", "region2"] and s.history == []
    )  # renumbered: chat restarts
    assert [r.color for r in s.regions] == [tiny_service_color(0), tiny_service_color(1)]
    tiny_service.undo(s)
    assert len(s.regions) == 3 and s.regions[1].label == "chair"
    tiny_service.redo(s)
    assert len(s.regions) == 2
    tiny_service.clear_regions(s)
    tiny_service.undo(s)
    assert len(s.regions) == 2
    with pytest.raises(ServiceError, match="reserved"):
        tiny_service.rename(s, 0, "region7")
    with pytest.raises(ServiceError, match="no region9"):
        tiny_service.delete(s, 8)


def tiny_service_color(i):
    return drawing.color(i)


def test_names_map_to_region_numbers_and_back(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 2)
    tiny_service.rename(s, 1, "the table")
    assert (
        to_model_names(s.regions, "Is the table next to region1?") == "Is region2 next to region1?"
    )
    assert (
        to_user_names(s.regions, "region2 holds region1.") == "region2 (the table) holds region1."
    )


def test_sessions_are_isolated(tiny_service, voc):
    a, b = Session(), Session()
    tiny_service.open_image(a, voc["rgb"])
    tiny_service.open_image(b, np.ascontiguousarray(voc["rgb"][::-1]))
    tiny_service.add_mask(a, voc["masks"][0])
    list(tiny_service.ask(a, "What is region1?"))
    assert b.regions == [] and b.history == [] and not np.array_equal(a.image, b.image)
    assert tiny_service.export(b)["regions"] == [] and len(tiny_service.export(a)["regions"]) == 1


def test_export_decodes_to_the_masks_shown(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 3)
    tiny_service.rename(s, 0, "plane")
    tiny_service.describe(s, "short", [0])
    data = json.loads(json.dumps(tiny_service.export(s)))
    assert [r["name"] for r in data["regions"]] == ["region1", "region2", "region3"]
    assert data["regions"][0]["label"] == "plane" and data["regions"][0]["caption"]
    for r, region in zip(data["regions"], s.regions):
        assert (
            np.array_equal(decode_rle(r["segmentation"]), region.mask) and r["area"] == region.area
        )
    assert data["untrained"] is True
    with zipfile.ZipFile(io.BytesIO(tiny_service.export_masks_zip(s))) as zf:
        png = np.asarray(Image.open(io.BytesIO(zf.read("region2.png"))))
        assert np.array_equal(png > 0, s.regions[1].mask) and "regions.json" in zf.namelist()


def test_bad_input_gets_clear_messages(tiny_service, voc):
    s = Session()
    with pytest.raises(ServiceError, match="Upload an image"):
        tiny_service.click(s, 1, 1)
    with pytest.raises(ServiceError, match="Upload an image"):
        tiny_service.open_image(s, None)
    with pytest.raises(ServiceError, match="cannot be used"):
        tiny_service.open_image(s, b"not an image at all")
    with pytest.raises(ServiceError, match="cannot be used"):
        tiny_service.open_image(s, np.zeros((3, 3, 7), np.uint8))
    tiny_service.open_image(s, voc["rgb"])
    with pytest.raises(ServiceError, match="outside"):
        tiny_service.click(s, 900, 10)
    with pytest.raises(ServiceError, match="Add a region first"):
        tiny_service.describe(s, "category")
    with pytest.raises(ServiceError, match="no mask to add"):
        tiny_service.add_region(s)
    with pytest.raises(ServiceError, match="Type a question"):
        list(tiny_service.ask(s, "   "))
    with pytest.raises(ServiceError, match="too thin"):
        tiny_service.click(s, 10, 10, "box")
        tiny_service.click(s, 11, 200, "box")
    with pytest.raises(ServiceError, match="The mask is 10x10"):
        tiny_service.add_mask(s, np.ones((10, 10), bool))


def test_whole_image_question_and_region_limit(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    assert list(tiny_service.ask(s, "Is there a person?"))  # no region: a question about the image
    limited = RegionChat(tiny_service.osprey, tiny_service.sam, max_regions=2)
    s2 = _with_regions(limited, voc, 2)
    with pytest.raises(ServiceError, match="At most 2 regions"):
        limited.add_mask(s2, voc["masks"][3])


def test_a_user_question_longer_than_the_context_is_refused(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 1)
    with pytest.raises(ServiceError, match="context"):
        list(tiny_service.ask(s, "qzjx " * 399))  # 1995 characters, about 2000 tokens


def test_stop_button_ends_the_stream(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 1)
    stop = threading.Event()
    stop.set()
    out = list(tiny_service.ask(s, "Describe region1.", stop))
    assert len(out) <= 3


def test_segment_everything_pick_and_describe_all(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    n = tiny_service.segment_everything(
        s, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert n == len(s.auto) > 0
    a = s.auto[-1]  # the smallest
    y, x = np.argwhere(a.mask)[0]
    tiny_service.pick_auto(s, float(x), float(y))
    assert tiny_service.current_mask(s).sum() <= a.area
    rows = tiny_service.describe_all(s, limit=3)
    assert len(rows) == min(3, n) and all(r["category"] is not None for r in rows)
    assert s.auto_labels and drawing.render(s).shape == voc["rgb"].shape


def test_a_chat_longer_than_the_context_drops_old_turns_and_says_so(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 1)
    s.history = [(f"question {i}?", "word " * 300) for i in range(6)]
    out = list(tiny_service.ask(s, "And now?"))
    assert out and "oldest turn(s) were left out" in out[-1].note
    assert len(s.history) == 7  # the full history is kept; only the prompt leaves turns out


def test_an_export_taken_while_an_answer_streams_holds_the_partial_turn(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 1)
    stream = tiny_service.ask(s, "What is region1?")
    first = next(stream)
    chat = tiny_service.export(s)["chat"]
    assert chat == [{"question": "What is region1?", "answer": first.text, "partial": True}]
    last = list(stream)[-1]
    assert tiny_service.export(s)["chat"] == [{"question": "What is region1?", "answer": last.text}]


def test_tiny_mode_segment_everything_finds_masks(voc):
    from osprey.app.main import parse_args
    from osprey.app.startup import build_service

    service = build_service(parse_args(["--tiny"]))
    s = Session()
    service.open_image(s, voc["rgb"])
    assert service.segment_everything(s) > 0


@pytest.mark.parametrize(
    "name, message",
    [("x" * 200, "at most 40 characters"), ("<mask>", "letters, digits"), ("{dog}", "letters")],
)
def test_region_names_have_a_length_and_a_character_rule(tiny_service, voc, name, message):
    s = _with_regions(tiny_service, voc, 1)
    with pytest.raises(ServiceError, match=message):
        tiny_service.rename(s, 0, name)
    tiny_service.rename(s, 0, "  red   car ")
    assert s.regions[0].label == "red car"


def test_an_unknown_click_mode_is_one_clear_error(tiny_service, voc):
    """An API client sending mode "sideways" got a positive click; now it gets one line and
    the session is unchanged."""
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    for mode in ("sideways", "pick", "x" * 500):
        with pytest.raises(ServiceError, match="Unknown click mode"):
            tiny_service.click(s, 40, 40, mode)
    assert s.points == [] and s.current_mask() is None


def _niceness(thread_id: int) -> int:
    from pathlib import Path

    stat = Path(f"/proc/self/task/{thread_id}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_on_a_cpu_new_uploads_are_encoded_on_a_nicer_lane(tiny_osprey, voc, monkeypatch):
    """On a CPU both encoders run for a new upload on the service's encode lane: one thread,
    ENCODE_NICE nicer than the request threads (Linux), so that clicks get the cores first.
    Its errors still reach the caller; without the lane the encoders run on the caller."""
    import os

    from osprey.core.priority import ENCODE_NICE
    from sam_bridge import SamBridge

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc: thread niceness is not visible here")
    sam = SamBridge.tiny()
    seen = []
    for name, model in (("sam", sam), ("osprey", tiny_osprey)):
        original = model.set_image

        def spy(image, name=name, original=original):
            seen.append(
                (name, threading.current_thread().name, _niceness(threading.get_native_id()))
            )
            return original(image)

        monkeypatch.setattr(model, "set_image", spy)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    service = RegionChat(tiny_osprey, sam)
    service.open_image(Session(), voc["rgb"])
    assert [(n, t.startswith("osprey-encode"), nice) for n, t, nice in seen] == [
        ("sam", True, base + ENCODE_NICE), ("osprey", True, base + ENCODE_NICE),
    ]  # fmt: skip

    monkeypatch.setattr(sam, "set_image", lambda image: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        service.open_image(Session(), voc["rgb"][::-1])

    seen.clear()
    RegionChat(tiny_osprey, SamBridge.tiny(), encode_lane=False).open_image(Session(), voc["rgb"])
    assert [t for _, t, _ in seen] == [threading.current_thread().name]


def test_an_image_opens_in_two_steps(tiny_service, voc):
    """The page's open: clicks can start after SAM's encoding, before Osprey's (a new photo:
    neither cache holds it)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(voc["rgb"][:, ::-1])).save(buf, "PNG")
    s, photo = Session(), buf.getvalue()
    sam0, vis0 = tiny_service.sam.stats.encodes, tiny_service.osprey.images.calls
    steps = tiny_service.open_steps(s, photo)
    handle = next(steps)
    assert s.image is handle and tiny_service.sam.stats.encodes == sam0 + 1
    assert tiny_service.osprey.images.calls == vis0  # Osprey has not read it yet
    tiny_service.click(s, 250, 200)  # clicks work already
    assert list(steps) == [handle] and tiny_service.osprey.images.calls == vis0 + 1
    assert not handle.decoded  # the decoded pixels were freed (the upload's bytes are kept)


def test_a_task_answer_streams_as_describe_answers_it(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 2)
    expected = tiny_service.describe(s, "short", [1])[0][1]
    tiny_service.rename(s, 1, "chair")
    replies = list(tiny_service.describe_stream(s, "short", 1))
    assert [r.done for r in replies] == [False] * (len(replies) - 1) + [True]
    assert replies[-1].text == expected and replies[-1].note == ""
    assert s.regions[1].caption == expected  # kept on the region, renamed meanwhile or not
    with pytest.raises(ServiceError, match="Unknown task"):
        next(tiny_service.describe_stream(s, "poem", 0))
    with pytest.raises(ServiceError, match="no region3"):
        next(tiny_service.describe_stream(s, "category", 2))


def test_a_task_answer_about_a_region_deleted_meanwhile_is_shown_not_kept(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 2)
    stream = tiny_service.describe_stream(s, "category", 1)
    next(stream)
    tiny_service.delete(s, 1)
    last = list(stream)[-1]
    assert last.done and "deleted" in last.note and [r.category for r in s.regions] == [""]
