import numpy as np
import pytest
from PIL import Image

from osprey.images import ImageError, load_image, to_rgb
from osprey.masks import (
    MaskError,
    box_to_polygon,
    decode_rle,
    decode_segmentation,
    encode_rle,
    load_mask_png,
    mask_box,
    polygons_to_mask,
    save_mask_png,
)


def test_modes_all_become_rgb_uint8(voc):
    rgb = voc["rgb"]
    pil = Image.fromarray(rgb)
    assert np.array_equal(to_rgb(pil), rgb)
    assert np.array_equal(to_rgb(rgb), rgb)
    for mode in ("L", "P", "CMYK", "YCbCr", "1"):
        out = to_rgb(pil.convert(mode))
        assert out.shape == rgb.shape and out.dtype == np.uint8
    grey = np.asarray(pil.convert("L"))
    assert np.array_equal(to_rgb(pil.convert("L"))[..., 1], grey)


def test_sixteen_bit_is_scaled_not_clipped():
    arr16 = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    out = to_rgb(Image.fromarray(arr16))  # mode I;16
    assert out[0, :, 0].tolist() == [0, 100, 255]
    assert to_rgb(arr16)[0, :, 0].tolist() == [0, 100, 255]


def test_rgba_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[1, 1] = (0, 0, 0, 0)  # transparent becomes white
    out = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).shape == (20, 10, 3)


def test_bad_images_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(bad)
    with pytest.raises(ImageError, match="MP"):
        to_rgb(np.zeros((100, 100, 3), np.uint8), max_pixels=5000)
    with pytest.raises(ImageError, match="shape"):
        to_rgb(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        to_rgb(np.zeros((0, 4, 3), np.uint8))


def test_rle_and_png_round_trip_real_masks(voc, tmp_path):
    for i, mask in enumerate(voc["masks"]):
        rle = encode_rle(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == [375, 500]
        assert np.array_equal(decode_rle(rle), mask)
        assert np.array_equal(decode_segmentation(rle, 375, 500), mask)
        path = save_mask_png(mask, tmp_path / f"{i}.png")
        assert np.array_equal(load_mask_png(path), mask)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "0.png"))).tolist()) <= {0, 255}


def test_uncompressed_rle_and_polygons():
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    counts, flat, prev, run = [], mask.flatten(order="F"), False, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    assert np.array_equal(decode_rle({"size": [6, 8], "counts": counts}), mask)
    poly = polygons_to_mask([box_to_polygon((2, 1, 6, 4))], 6, 8)
    assert mask_box(poly) == mask_box(mask) == (2, 1, 6, 4)
    with pytest.raises(MaskError, match="covers"):
        decode_rle({"size": [6, 8], "counts": [1, 2]})
    with pytest.raises(MaskError, match="image is"):
        decode_segmentation(encode_rle(mask), 7, 8)
    assert mask_box(np.zeros((3, 3), bool)) is None
