"""The app, its page's server side, the HTTP API and ``app.py --tiny --sam sam2.1-tiny`` over
SAM 2.1 (the tiny random SAM 2 with the tiny Osprey): everything they do with SAM 1 works the
same, through the same Segmenter interface."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from osprey.app import drawing
from osprey.app.canvas_page import Assets, Page
from osprey.app.demo import build_demo
from osprey.app.main import parse_args
from osprey.app.session import Session
from osprey.app.startup import build_service
from sam_bridge import SamBridge
from tests.support.sam import photo
from tests.support.servers import serving


@pytest.fixture(scope="module")
def service(tiny_osprey):
    from osprey.app.service import RegionChat

    return RegionChat(tiny_osprey, SamBridge.tiny(family="sam2"), max_new_tokens=6)


def test_tiny_app_builds_the_sam_the_options_name():
    sam2 = build_service(parse_args(["--tiny", "--sam", "sam2.1-tiny"]))
    assert sam2.sam.family.name == "sam2" and sam2.untrained
    sam1 = build_service(parse_args(["--tiny"]))  # --tiny alone: today's tiny SAM 1
    assert sam1.sam.family.name == "sam1" and sam1.sam.model_type == "tiny"


def test_upload_click_refine_box_add_ask(service, voc):
    s = Session()
    service.open_image(s, voc["rgb"])
    service.click(s, 250, 200)
    assert len(s.prediction.candidates) == 3
    service.click(s, 60, 40, "negative")  # refines through SAM 2's mask input
    assert [p[2] for p in s.points] == [1, 0] and len(s.prediction.candidates) == 1
    service.add_region(s)
    service.click(s, 100, 80, "box")
    service.click(s, 300, 250, "box")
    assert s.box == (100, 80, 300, 250) and s.prediction is not None
    service.add_region(s)
    answers = service.describe(s, "category")
    assert [name for name, _ in answers] == ["region1", "region2"]
    assert list(service.ask(s, "What is region1?"))
    assert service.sam.stats.encodes == 1 and drawing.render(s).shape == voc["rgb"].shape


def test_everything_pick_and_describe_all(service, voc):
    s = Session()
    service.open_image(s, voc["rgb"])
    n = service.segment_everything(s, points_per_side=3, pred_iou_thresh=0.0,
                                   stability_score_thresh=0.0)  # fmt: skip
    assert n == len(s.auto) > 0
    a = s.auto[-1]
    y, x = np.argwhere(a.mask)[0]
    service.pick_auto(s, float(x), float(y))
    assert service.current_mask(s).sum() <= a.area
    assert len(service.describe_all(s, limit=2)) == min(2, n)


def test_the_page_gets_sam2s_decoder_and_packed_maps(service, voc, tmp_path):
    from tests.support.page_decoder import unpack_maps

    service.sam.onnx_dir = tmp_path / "onnx"
    page = Page(service.masks, Assets(tmp_path / "assets"))
    assert page.decoder_kind == "sam2" and "sam2_" in page.decoder_url
    s = Session()
    service.open_image(s, photo(voc["rgb"], 750, 1000))
    view = page.view(s)
    assert view["decoder_kind"] == "sam2"
    image = view["image"]
    assert image["maps"] == [[1, 32, 64, 64], [1, 4, 256, 256], [1, 8, 128, 128]]
    assert image["gzip"] and image["input"] == [1024, 1024] and image["shown"] == [1000, 750]
    data = (tmp_path / "assets" / image["embedding"].split("/")[-1]).read_bytes()
    expected = service.sam.page_embedding(s.image).maps
    for got, want in zip(unpack_maps(data, image["maps"]), expected):
        assert np.array_equal(got, want)


def test_a_sam2_export_that_fails_leaves_the_servers_click_path(service, voc, tmp_path, capsys,
                                                                monkeypatch):  # fmt: skip
    def broken(*args):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(service.sam.family, "page_decoder", broken)
    page = Page(service.masks, Assets(tmp_path))
    assert page.decoder_url is None
    err = capsys.readouterr().err
    assert err.count("clicks will be decoded on the server") == 1 and "exporter crashed" in err
    s = Session()
    service.open_image(s, voc["rgb"])
    assert page.view(s)["image"]["embedding"] is None
    preview = page.preview(s, {"clicks": [[250, 180, "positive"]], "id": 3}).preview
    assert preview["id"] == 3 and len(preview["scores"]) == 3
    page.apply(s, {"page": {"clicks": [[250, 180, "positive"], [100, 90, "negative"]]}})
    assert s.current_mask().shape == (375, 500)


def test_the_http_api_segments_with_sam2(service, voc, tmp_path):
    from gradio_client import Client, handle_file

    path = tmp_path / "photo.png"
    Image.fromarray(voc["rgb"]).save(path)
    with serving(build_demo(service)) as url:
        client = Client(url, verbose=False)
        mask, info = client.predict(handle_file(str(path)), "[[250, 180], [60, 40]]", "[1, 0]",
                                    "[40, 30, 400, 330]", api_name="/segment")  # fmt: skip
        assert np.asarray(Image.open(mask)).shape == (375, 500) and info["area"] >= 0
        rows = client.predict(handle_file(str(path)), 2, 0.0, 0.0, "", api_name="/describe_all")
        assert rows and {"mask", "category", "caption", "area", "box"} <= set(rows[0])
