import numpy as np
import pytest
from PIL import Image

from osprey.core.images import ImageError, load_image, to_rgb
from osprey.core.masks import (
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


# ---------------------------------------------------------------------------------------------
# handles made from bytes: decoded once, resized from PIL, released, decoded again


def _encoded(rgb, fmt: str, **kw) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **kw)
    return out.getvalue()


def test_a_handle_from_bytes_is_the_array_path_bit_for_bit(voc):
    from osprey.core.images import ImageHandle, image_key, load_image, pil_key

    for data in (_encoded(voc["rgb"], "PNG"), _encoded(voc["rgb"], "JPEG", quality=90)):
        rgb = load_image(data)
        handle = ImageHandle.of(data)
        assert handle.key == image_key(rgb) == pil_key(handle.pil)
        assert (handle.height, handle.width) == rgb.shape[:2]
        assert np.array_equal(handle.rgb, rgb)
        handle.release()
        assert not handle.decoded and handle.nbytes == len(data)
        assert np.array_equal(handle.rgb, rgb) and np.array_equal(np.asarray(handle.pil), rgb)


def test_sam_and_osprey_read_a_handle_as_they_read_its_array(voc):
    """SAM's embedding and Osprey's pixels from a handle's PIL image equal those from the
    decoded array (SAM's ResizeLongestSide; Osprey's CLIP preprocessing): nothing changes but
    the memory."""
    import torch

    from osprey.core.images import ImageHandle, load_image
    from osprey.inference.preprocess import preprocess_image
    from sam_bridge import SamBridge

    data = _encoded(voc["rgb"], "JPEG", quality=90)
    rgb, handle = load_image(data), ImageHandle.of(data)
    assert torch.equal(preprocess_image(handle), preprocess_image(rgb))
    for family in ("sam1", "sam2"):
        bridge = SamBridge.tiny(family=family)
        from_handle = bridge._embed(lambda: handle, cache=False)
        from_array = bridge._embed(rgb, cache=False)
        assert torch.equal(from_handle.features, from_array.features), family
        assert all(map(torch.equal, from_handle.high_res, from_array.high_res)), family
        assert from_handle.input_size == from_array.input_size
        assert from_handle.original_size == from_array.original_size


def test_rle_masks_give_the_same_logits_as_arrays(tiny_osprey, voc):
    """Masks kept as RLE and decoded as the extractor reads them (a MaskStack) give exactly the
    logits of the same masks passed as arrays."""
    import torch

    from osprey.core.masks import RleMasks, encode_rle
    from osprey.model.mask_extractor import chunk_size

    masks = voc["masks"][:3]
    prompt = "<image>\nWhat are region1 <mask><pos>, region2 <mask><pos> and region3 <mask><pos>?"
    lazy = RleMasks([encode_rle(m) for m in masks])
    assert torch.equal(
        tiny_osprey.logits(voc["rgb"], lazy, prompt), tiny_osprey.logits(voc["rgb"], masks, prompt)
    )
    assert chunk_size((375, 500)) == 16 and chunk_size((8000, 8000)) == 1


def test_check_rle_takes_every_real_rle_and_refuses_what_pycocotools_misreads():
    """An RLE from outside is checked before pycocotools decodes it: a short one decodes to
    uninitialised memory there, a malformed one is read past its end."""
    from osprey.core.masks import check_rle, encode_rle

    rng = np.random.default_rng(0)
    for shape in [(375, 500), (7, 3), (1, 1)]:
        for p in (0.0, 0.001, 0.5, 1.0):
            check_rle(encode_rle(rng.random(shape) < p)["counts"], *shape)
    for counts, word in [("0T3", "pixels"), ("", "pixels"), ("!!!!", "alphabet"),
                         ("PPPP", "ends inside"), ("0" + "9" * 2, "pixels")]:  # fmt: skip
        with pytest.raises(MaskError, match=word):
            check_rle(counts, 375, 500)
