"""Hostile and broken input through the HTTP API (gradio_client against the app on loopback, tiny
models): every case gets the app's own message, odd but valid images are handled, and the server
keeps serving. SECURITY.md lists these cases."""

import io
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from osprey.app.demo import build_demo
from tests.support.servers import serving

FILE_LIMIT = 2_000_000  # bytes, for this test server


@pytest.fixture(scope="module")
def url(tiny_service):
    with serving(build_demo(tiny_service), max_file_size=FILE_LIMIT) as address:
        yield address


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory, voc):
    d = tmp_path_factory.mktemp("hostile")
    rgb = voc["rgb"]
    Image.fromarray(rgb).save(d / "ok.png")
    Image.fromarray(voc["masks"][0].astype(np.uint8) * 255).save(d / "mask.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(d / "small_mask.png")
    (d / "zero.png").write_bytes(b"")
    (d / "text.png").write_text("not an image at all")
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG")
    (d / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # 400 MP in a few KB
    Image.new("1", (10000, 10000)).save(d / "huge.png")  # 100 MP: over the 64 MP limit
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(d / "gray16.png")
    Image.fromarray(rgb).convert("RGBA").convert("P").save(d / "palette.png", transparency=0)
    frames = [Image.fromarray(rgb), Image.fromarray(rgb[::-1].copy())]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.fromarray(rgb).save(d / "rotated.jpg", exif=exif)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), np.uint8)).save(
        d / "too_big_file.png"
    )  # about 4 MB of noise: above this server's upload limit
    return d


def _segment(client, path, points="[[10, 10]]", labels="[1]", box=""):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), points, labels, box, api_name="/segment")


@pytest.mark.parametrize(
    "name, message",
    [
        ("zero.png", "cannot be used"),
        ("text.png", "cannot be used"),
        ("truncated.jpg", "cannot be used"),
        ("bomb.png", "above the limit"),
        ("huge.png", "above the limit of 64 MP"),
    ],
)
def test_broken_uploads_get_the_apps_message(client, files, name, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        _segment(client, files / name)


@pytest.mark.parametrize(
    "name, size",
    [
        ("cmyk.jpg", (375, 500)),
        ("gray16.png", (375, 500)),
        ("palette.png", (375, 500)),
        ("animated.gif", (375, 500)),  # the first frame
        ("rotated.jpg", (500, 375)),  # EXIF orientation applied
    ],
)
def test_odd_but_valid_images_work(client, files, name, size):
    mask_path, info = _segment(client, files / name)
    assert np.asarray(Image.open(mask_path)).shape == size and info["area"] >= 0


@pytest.mark.parametrize(
    "points, labels, box, message",
    [
        ("abc", "[1]", "", "points must be JSON"),
        ("[[1, 2]", "[1]", "", "points must be JSON"),
        ("[1, 2]", "[1]", "", "list of \\[x, y\\] pairs"),
        ("[[NaN, 1]]", "[1]", "", "list of \\[x, y\\] pairs"),
        (str([[5, 5]] * 65), "", "", "at most 64 points"),
        ("[[5, 5]]", "[2]", "", "labels must be a list of 1"),
        ("[[5, 5]]", "[1, 0]", "", "1 points but 2 labels"),
        ("", "", "[1, 2, 3]", "box must be"),
        ("", "", "", "at least one point or a box"),
        ("[[9000, 1]]", "[1]", "", "outside"),
    ],
)
def test_bad_prompts_get_a_clear_message(client, files, points, labels, box, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        _segment(client, files / "ok.png", points, labels, box)


def test_describe_limits(client, files):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image, mask = handle_file(str(files / "ok.png")), handle_file(str(files / "mask.png"))
    cases = [
        ([handle_file(str(files / "text.png"))], "category", "", 0, "A mask cannot be used"),
        (
            [handle_file(str(files / "small_mask.png"))],
            "category",
            "",
            0,
            "mask 1 is 10x10, the image 500x375",
        ),
        ([mask], "category", "", 10**6, "max_new_tokens must be a whole number from 0 to"),
        ([mask], "", "why " * 600, 0, "at most 2000 characters"),
        ([mask] * 51, "category", "", 0, "at most 50 masks"),
        ([mask], "poem", "", 0, "Unknown task"),
    ]
    for masks, task, question, tokens, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(image, masks, task, question, tokens, api_name="/describe")
    answers = client.predict(image, [mask], "category", "", 3, api_name="/describe")
    assert isinstance(answers, list) and len(answers) == 1


def test_segment_everything_grid_is_capped(client, files):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="points_per_side must be a whole number from 1 to 32"):
        client.predict(handle_file(str(files / "ok.png")), 1000, 0.0, 0.0, api_name="/describe_all")


def test_uploads_above_the_size_limit_are_refused(client, files):
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        _segment(client, files / "too_big_file.png")


@pytest.mark.parametrize(
    "route", ["/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../../etc/passwd"]
)
def test_the_file_route_serves_nothing_outside_the_cache(url, route):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url.rstrip("/") + route)
    assert info.value.code in (403, 404)


def test_the_server_keeps_serving_after_all_that(client, files):
    _, info = _segment(client, files / "ok.png", "[[250, 200]]")
    assert info["area"] > 0
