"""The canvas page's server side (osprey/app/canvas_page.py) without a browser: the page's prompt is checked
like any user input, replaying it gives the server's own click path, the view holds only
display-size files, and the fallback answers with display-size masks; what a browser keeps of a
session comes back whole, or is refused whole (osprey/app/saved.py); chips follow their regions."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest

from osprey.app import drawing, saved
from osprey.app.canvas_page import (
    Assets,
    Page,
    PageView,
    chip_indices,
    pack_masks,
    parse_prompt,
    region_chips,
)
from osprey.app.session import Session
from osprey.core.errors import ServiceError
from tests.support.sam import photo

BAD = [
    None, "clicks", {"clicks": "x"}, {"clicks": [[1, 2]]}, {"clicks": [[1, 2, "erase"]]},
    {"clicks": [["1", 2, "positive"]]}, {"clicks": [[float("nan"), 2, "positive"]]},
    {"clicks": [[True, 2, "positive"]]}, {"clicks": [[500, 2, "positive"]]},
    {"clicks": [[-1, 2, "positive"]]}, {"clicks": [[1, 2, "positive"]] * 65},
    {"clicks": [], "candidate": 7}, {"clicks": [], "candidate": "0"},
]  # fmt: skip


@pytest.fixture()
def page(tiny_service, tmp_path):
    return Page(tiny_service.masks, Assets(tmp_path / "assets"))


@pytest.fixture()
def opened(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    return s


@pytest.mark.parametrize("data", BAD)
def test_hostile_prompts_are_refused_with_a_message(opened, data):
    with pytest.raises(ServiceError):
        parse_prompt(data, opened.image)


def test_replaying_the_page_prompt_is_the_server_click_path(tiny_service, page, opened, voc):
    clicks = [[250, 180, "positive"], [120, 90, "negative"], [60, 40, "box"], [420, 330, "box"]]
    page.apply(opened, {"page": {"clicks": clicks, "candidate": 0}})
    reference = Session()
    tiny_service.open_image(reference, voc["rgb"])
    for x, y, mode in clicks:
        tiny_service.click(reference, x, y, mode)
    assert np.array_equal(opened.current_mask(), reference.current_mask())
    assert opened.box == reference.box and opened.points == reference.points


def test_view_sends_display_size_files_only(tiny_service, page, voc):
    s = Session()
    tiny_service.open_image(s, photo(voc["rgb"], 3024, 4032))
    view = page.view(s)
    assert view["image"]["shown"] == [1024, 768] and view["image"]["width"] == 4032
    base = cv2.imread(str(page.assets.directory / view["image"]["base"].split("/")[-1]))
    assert base.shape[:2] == (768, 1024)
    features = np.fromfile(
        page.assets.directory / view["image"]["embedding"].split("/")[-1], np.float16
    )
    assert features.size == view["image"]["channels"] * 64 * 64
    assert view["decoder"].endswith(".onnx") and view["prompt"] == f"{s.id}:{s.prompt_serial}"


def test_fallback_preview_is_display_size_and_incremental(tiny_service, page, voc):
    s = Session()
    tiny_service.open_image(s, photo(voc["rgb"], 1500, 2000))
    first = page.preview(s, {"clicks": [[900, 700, "positive"]], "id": 1}).preview
    assert first["id"] == 1 and len(first["scores"]) == 3
    png = cv2.imread(str(page.assets.directory / first["masks"].split("/")[-1]), -1)
    assert png.shape == drawing.display_size(1500, 2000)
    expected = tiny_service.sam.predict(s.image, points=[(900, 700)], mask_size=png.shape)
    assert np.array_equal(png & 1 > 0, expected.candidates[0].mask)
    second = page.preview(s, {"clicks": [[900, 700, "positive"], [300, 300, "negative"]]}).preview
    assert len(second["scores"]) == 1  # refined: one mask


def test_pack_masks_keeps_each_mask_in_its_bit():
    rng = np.random.default_rng(0)
    masks = [rng.random((30, 40)) > 0.5 for _ in range(3)]
    planes = cv2.imdecode(np.frombuffer(pack_masks(masks), np.uint8), -1)
    for i, m in enumerate(masks):
        assert np.array_equal((planes >> i) & 1 > 0, m)


def test_assets_prune_generated_files_only(tmp_path):
    assets = Assets(tmp_path, capacity=2)
    kept = tmp_path / "src" / "sam_tiny_decoder.onnx"
    kept.parent.mkdir()
    kept.write_bytes(b"onnx")
    assets.copy(kept)
    for i in range(5):
        assets.write(f"b-{i}.jpg", b"x")
        os.utime(tmp_path / f"b-{i}.jpg", (1000 + i, 1000 + i))  # oldest first, whatever the clock
    assets.prune()
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["b-3.jpg", "b-4.jpg", "sam_tiny_decoder.onnx"]
    assets.max_bytes = 1  # and by size: the newest files that fit (one byte: b-4.jpg) are kept
    assets.prune()
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["b-4.jpg", "sam_tiny_decoder.onnx"]


def test_each_model_gets_its_own_embedding_file(tiny_service, voc, tmp_path):
    """Two SAMs on one assets folder (two apps, or an app restarted with other weights) never
    serve each other's embeddings."""
    from osprey.app.mask_prompts import MaskPrompts
    from sam_bridge import SamBridge

    other = SamBridge.tiny(seed=1)
    other.onnx_dir = tmp_path / "onnx"
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    views = [Page(m, Assets(tmp_path)).view(s) for m in (tiny_service.masks, MaskPrompts(other))]
    assert views[0]["image"]["embedding"] != views[1]["image"]["embedding"]
    assert views[0]["decoder"] != views[1]["decoder"]


def test_a_decoder_that_cannot_be_built_leaves_the_server_path(tmp_path, capsys, monkeypatch):
    """The page's decoder is an extra: if its export fails the app still starts, the page gets
    no decoder (and uses the server's click path, saying so), and the log says why; if only
    the 8-bit step fails, the page gets the float32 decoder."""
    import pytest

    from osprey.app.mask_prompts import MaskPrompts
    from sam_bridge import SamBridge, onnx_export

    sam = SamBridge.tiny(seed=2)
    sam.onnx_dir = tmp_path / "onnx"

    def broken():
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(sam, "decoder_onnx", broken)
    assert Page(MaskPrompts(sam), Assets(tmp_path)).view(Session())["decoder"] is None
    assert "clicks will be decoded on the server" in capsys.readouterr().err
    monkeypatch.undo()

    def no_runtime(source, path):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(onnx_export, "quantize_decoder", no_runtime)
    with pytest.warns(UserWarning, match="stays float32"):
        path = onnx_export.cached_decoder(sam.model, "vit_b", sam.onnx_dir)
    assert path.is_file() and not path.name.endswith("_int8.onnx")


# ---------------------------------------------------------------------------------------------
# what a browser keeps (osprey/app/saved.py) and the region chips


def _kept_session(service, voc) -> Session:
    s = Session()
    service.open_image(s, voc["rgb"])
    for i in range(3):
        service.add_mask(s, voc["masks"][i])
    service.rename(s, 1, "chair")
    service.describe(s, "category", [0])
    s.regions[2] = replace(s.regions[2], top=(("dog", 0.75), ("cat", 0.25)), vocabulary="coco")
    s.history = [("What is region2?", "A chair.")]
    s.chat = [{"role": "user", "content": "What is region2 (chair)?"},
              {"role": "assistant", "content": "A chair."}]  # fmt: skip
    return s


def test_a_kept_copy_brings_the_regions_names_answers_and_chat_back(tiny_service, voc):
    s = _kept_session(tiny_service, voc)
    copy = json.loads(json.dumps(saved.snapshot(s)))  # as it travels to the browser and back
    fresh = Session()
    tiny_service.open_image(fresh, voc["rgb"])
    assert saved.restore(fresh, copy, tiny_service.max_regions) == 3
    assert fresh.names() == s.names() and fresh.history == s.history and fresh.chat == s.chat
    for old, new in zip(s.regions, fresh.regions):
        assert np.array_equal(old.mask, new.mask)
        assert (new.label, new.category, new.top, new.color) == (
            old.label,
            old.category,
            old.top,
            old.color,
        )
    assert not fresh.can_undo and saved.snapshot(Session()) is None


def _broken_copies(copy: dict) -> list[tuple[dict, str]]:
    """Copies a page (or someone) could send, each wrong in one way, and the word that says so."""
    region = copy["regions"][0]
    counts = region["rle"]["counts"]
    cases = [({**copy, "version": 0}, "version"), ({**copy, "key": "other"}, "another image")]
    for change, word in [
        ({"rle": {**region["rle"], "size": [10, 10]}}, "size"),
        ({"rle": {**region["rle"], "counts": counts[:-3]}}, "RLE"),
        ({"rle": {**region["rle"], "counts": "0T3"}}, "pixels"),  # pycocotools reads garbage
        ({"rle": {**region["rle"], "counts": "!!" + counts}}, "alphabet"),
        ({"rle": {**region["rle"], "counts": "x" * (saved.MAX_COUNTS + 1)}}, "size"),
        ({"rle": {"size": region["rle"]["size"], "counts": 5}}, "no mask"),
        ({"label": "region7"}, "reserved"), ({"label": "chair"}, "already named"),
        ({"label": "the"}, "questions are made of"), ({"top": [["dog", 7.0]]}, "probability"),
        ({"category": "x" * (saved.MAX_TEXT + 1)}, "too long"), ({"caption": 3}, "not text"),
    ]:  # fmt: skip
        cases.append(({**copy, "regions": [{**region, **change}, *copy["regions"][1:]]}, word))
    cases += [
        ({**copy, "regions": copy["regions"] * 50}, "too many"),
        ({**copy, "chat": [{"role": "system", "content": "x"}]}, "role"),
        ({**copy, "history": [["q"]]}, "malformed"),
        ({**copy, "history": "hello"}, "malformed"),
    ]
    return cases


def test_a_kept_copy_is_checked_like_any_input(tiny_service, voc):
    """Every value that comes back from a browser is checked; a wrong copy is refused whole
    (one message) and the session stays as it was."""
    copy = json.loads(json.dumps(saved.snapshot(_kept_session(tiny_service, voc))))
    fresh = Session()
    tiny_service.open_image(fresh, voc["rgb"])
    for bad, word in _broken_copies(copy):
        with pytest.raises(ServiceError, match=word):
            saved.restore(fresh, bad, tiny_service.max_regions)
        assert fresh.regions == [] and fresh.chat == [] and fresh.history == []


def test_chips_follow_their_regions_through_edits(tiny_service, voc):
    s = _kept_session(tiny_service, voc)
    tiny_service.add_mask(s, voc["masks"][0])  # the same mask twice: two chips, two ids
    chips = region_chips(s)
    ids = [c["id"] for c in chips["regions"]]
    assert len(set(ids)) == 4 and chips["regions"][1]["name"] == "region2 (chair)"
    assert chips["regions"][0]["color"] == "#" + bytes(drawing.color(0)).hex() and chips["can_undo"]
    assert chip_indices(s, [ids[2], ids[3], "gone", 5]) == [2, 3]
    tiny_service.delete(s, 1)  # renumbered: the ids still find their regions
    assert chip_indices(s, [ids[2], ids[0]]) == [0, 1] and chip_indices(s, [ids[1]]) == []
    assert chip_indices(s, "not a list") == []


def test_the_view_carries_the_message_progress_and_what_to_keep(tiny_service, page, voc):
    s = _kept_session(tiny_service, voc)
    view = page.view(PageView(s, message="hello", preparing="answers", forget=True))
    assert (view["message"], view["preparing"], view["forget"], view["refused"]) == (
        "hello", "answers", True, False,
    )  # fmt: skip
    assert view["saved"] == saved.snapshot(s)
    regions = json.loads((page.assets.directory / view["regions"].split("/")[-1]).read_text())
    assert regions["size"] == [375, 500] and len(regions["masks"]) == 3  # display size: as shown
    assert page.view(Session())["saved"] is None and page.view(None)["decoder"]
