"""Benchmark input files built in tmp from the real VOC photo and masks (shared by tests)."""

import json

from PIL import Image

from osprey.core.masks import box_to_polygon, mask_box


def region_question(qid, image, mask, text):
    """A benchmark question about the box of `mask`, the box given as a rectangle polygon."""
    x0, y0, x1, y1 = mask_box(mask)
    return {
        "question_id": qid,
        "image": image,
        "category": "description",
        "text": text,
        "annotation": {
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "segmentation": [box_to_polygon((x0, y0, x1, y1))],
        },
    }


def description_dataset(tmp_path, rgb, masks):
    """questions.json, answers.json and prompt.json for two VOC regions; returns (dir, images)."""
    images = tmp_path / "coco"
    images.mkdir()
    Image.fromarray(rgb).save(images / "000000000001.jpg", quality=95)
    d = tmp_path / "description"
    d.mkdir()
    qs = [
        region_question(i, "000000000001.jpg", masks[k], "Can you describe <region> in detail?")
        for i, k in enumerate((15, 18))
    ]
    (d / "questions.json").write_text(json.dumps(qs))
    (d / "answers.json").write_text(
        json.dumps([{"question_id": q["question_id"], "text": "A reference answer."} for q in qs])
    )
    (d / "prompt.json").write_text(
        json.dumps(
            [
                {
                    "image": "000000000001.jpg",
                    "prompt": "The detailed description of this image: a room.",
                }
            ]
        )
    )
    return d, images


def eval_argv(benchmark: str, **options) -> list[str]:
    """Command line of ``python -m osprey.eval``: ``out=path`` becomes ``--out str(path)``,
    ``judge_base_url=u`` becomes ``--judge-base-url u``."""
    argv = [benchmark]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv
