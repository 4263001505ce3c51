"""``python -m osprey.label``: image listings, regions, the COCO output, resuming, skipping.

Tiny random models (their masks and answers are meaningless; the structure is what is tested).
The Ray backend is tested in tests/test_label_ray.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from osprey.core.errors import UsageError
from osprey.core.masks import encode_rle
from osprey.label.cli import main
from osprey.label.coco import to_coco, write_json_atomic
from osprey.label.inputs import ImageItem, list_images
from osprey.label.job import Labeller
from osprey.label.regions import RegionIndex
from osprey.label.runner import LocalBackend, label_dataset
from osprey.label.shards import ShardStore, shard_dir
from osprey.label.tasks import parse_tasks
from tests.support.label import SIZES, TINY_FLAGS, photo_folder, tiny_settings
from tests.support.readme import blocks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, voc):
    return photo_folder(tmp_path_factory.mktemp("photos"), voc["rgb"])


@pytest.fixture(scope="module")
def labeller(tiny_osprey):
    from sam_bridge import SamBridge

    return Labeller(tiny_osprey, SamBridge.tiny(), tiny_settings())


class CountingBackend(LocalBackend):
    """The in-process backend, counting the images it labels."""

    def __init__(self, labeller, stop_after: int | None = None):
        super().__init__(labeller.settings, labeller)
        self.labelled: list[str] = []
        self.stop_after = stop_after

    def __call__(self, items, emit):
        def counted(record):
            self.labelled.append(record["file_name"])
            emit(record)
            if self.stop_after is not None and len(self.labelled) >= self.stop_after:
                raise KeyboardInterrupt

        super().__call__(items, counted)


def run(items, out, labeller, progress=False, **kwargs):
    backend = CountingBackend(labeller, kwargs.pop("stop_after", None))
    summary = label_dataset(items, labeller.settings, out, backend, progress=progress, **kwargs)
    return summary, backend.labelled


# ---------------------------------------------------------------------------------------------
# inputs


def test_folder_listing_is_recursive_sorted_and_filtered(photos):
    items = list_images(photos)
    names = [i.file_name for i in items]
    assert names == sorted(names)
    assert names == ["broken.jpg", "img0.jpg", "img2.png", "sub/img1.jpg", "sub/truncated.jpg"]
    assert [i.image_id for i in items] == [1, 2, 3, 4, 5]
    assert all(Path(i.path).is_file() and Path(i.path).is_absolute() for i in items)


def test_text_and_coco_listings(tmp_path, photos):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{photos / 'img0.jpg'}\n\nsub/img1.jpg\nsub/img1.jpg\n")
    items = list_images(listing, image_root=photos)
    assert [i.file_name for i in items] == [str(photos / "img0.jpg"), "sub/img1.jpg"]
    assert items[1].path == str(photos / "sub" / "img1.jpg")

    coco = photos / "set.json"
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "img2.png"},
                                           {"id": 3, "file_name": "sub/img1.jpg"}]}))  # fmt: skip
    items = list_images(coco)
    assert [(i.file_name, i.image_id) for i in items] == [("img2.png", 7), ("sub/img1.jpg", 3)]
    assert items[0].path == str(photos / "img2.png")
    coco.unlink()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{}", "no 'images' list"),
        ('{"images": [{"id": 1}]}', "has no 'file_name'"),
        ('{"images": [{"file_name": "a.jpg", "id": "1"}]}', "no integer 'id'"),
        ("[1, 2]", "not a COCO JSON"),
        ("{not json", "cannot read"),
        (
            '{"images": [{"file_name": "a.jpg", "id": 1}, {"file_name": "b.jpg", "id": 1}]}',
            "repeats the id 1",
        ),
    ],
)
def test_bad_listings_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "images.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        list_images(path)


def test_empty_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no images found"):
        list_images(tmp_path)


def test_tasks_are_checked():
    assert parse_tasks("category, short,category") == ("category", "short")
    assert parse_tasks(["detailed"]) == ("detailed",)
    with pytest.raises(UsageError, match=r"unknown task.*colour"):
        parse_tasks("category,colour")
    with pytest.raises(UsageError, match="no task"):
        parse_tasks(" , ")


# ---------------------------------------------------------------------------------------------
# the command: output valid for pycocotools


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory, photos):
    """The command's output on the photos (the batching engine on: 4 images per batch, their 9
    regions in one batch) and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("cli") / "labels.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(photos), "--out", str(out), *TINY_FLAGS, "--batching", "on"]) == 0
    return out, printed.getvalue()


def test_cli_writes_a_coco_file_pycocotools_loads(cli_output):
    out, printed = cli_output
    assert "3 images (2 skipped), 9 regions" in printed
    coco = COCO(str(out))
    data = coco.dataset
    assert [im["file_name"] for im in data["images"]] == ["img0.jpg", "img2.png", "sub/img1.jpg"]
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    assert sorted(sizes.values()) == sorted(SIZES)
    assert [a["id"] for a in data["annotations"]] == list(range(1, 10))
    for ann in data["annotations"]:
        mask = coco.annToMask(ann)
        assert mask.shape == sizes[ann["image_id"]]
        assert ann["area"] == int(mask.sum()) > 0
        assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist()
        assert isinstance(ann["score"], float)
        assert isinstance(ann["category_name"], str) and isinstance(ann["caption"], str)
        assert "description" not in ann  # not asked
        name = ann["category_name"].strip() or "region"
        assert coco.cats[ann["category_id"]]["name"] == name
    names = {c["name"] for c in data["categories"]}
    assert names == {a["category_name"].strip() or "region" for a in data["annotations"]}
    skipped = {s["file_name"]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == {"broken.jpg", "sub/truncated.jpg"}
    assert all("cannot read image" in reason for reason in skipped.values())
    assert data["info"]["untrained"] is True


def test_batching_across_images_changes_nothing(cli_output, tmp_path, photos, labeller):
    """The command decoded the regions of all its images in one batch of the engine; the fixture's
    labeller has no engine (each image's regions over their shared prefix, one image at a time)."""
    assert labeller.osprey.generator.engine is None
    run(list_images(photos), tmp_path / "labels.json", labeller)
    assert json.loads((tmp_path / "labels.json").read_text()) == json.loads(
        cli_output[0].read_text()
    )


def test_images_labelled_together_get_their_own_answers(photos, labeller):
    items = list_images(photos)
    together = labeller.label_many(items)
    assert together == [labeller.label(item) for item in items]
    assert [r["file_name"] for r in together] == [i.file_name for i in items]
    captions = [a["caption"] for r in together for a in r.get("annotations", [])]
    assert len(captions) == 9 and len(set(captions)) > 1


def test_cli_tasks_and_limit(tmp_path, photos):
    out = tmp_path / "labels.json"
    argv = [str(photos), "--out", str(out), *TINY_FLAGS, "--tasks", "detailed", "--limit", "2"]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [im["file_name"] for im in data["images"]] == ["img0.jpg"]  # broken.jpg is first
    assert {k for a in data["annotations"] for k in a} >= {"description", "score", "bbox"}
    assert not {"category_name", "caption"} & {k for a in data["annotations"] for k in a}
    assert data["categories"] == [{"id": 1, "name": "region"}]


def test_the_tiny_sam2_labels_through_the_cli_and_settings_keep_the_choice(tmp_path, photos):
    from osprey.label.cli import build_parser, settings_from

    out = tmp_path / "labels.json"
    argv = [str(photos), "--out", str(out), *TINY_FLAGS, "--tasks", "category", "--limit", "2"]
    assert main([*argv, "--sam", "sam2.1-tiny"]) == 0
    data = json.loads(out.read_text())
    assert data["annotations"] and all(a["area"] > 0 for a in data["annotations"])
    settings = settings_from(build_parser().parse_args([*argv, "--sam", "sam2.1-tiny"]))
    assert settings.sam_model_type == "sam2.1-tiny"
    assert settings.fingerprint()["sam"][0] == "sam2.1-tiny"  # another SAM does not resume
    assert settings_from(build_parser().parse_args(argv)).sam_model_type == "auto"
    labeller = Labeller.load(settings)
    assert labeller.sam.family.name == "sam2" and labeller.sam.untrained


def test_an_unknown_sam_is_one_line_before_any_work(tmp_path, photos, capsys):
    from osprey.core.options import run

    out = str(tmp_path / "labels.json")
    assert run(main, [str(photos), "--out", out, "--tiny", "--sam", "sam9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown SAM 'sam9'") and err.count("\n") == 1


def test_vocab_gives_each_region_its_top_k_and_the_categories(tmp_path, photos, tiny_osprey):
    """--vocab: every region gets its top-k classes (the model's own probabilities), the
    categories are the vocabulary's classes in order, and a region is filed under its top-1."""
    out = tmp_path / "labels.json"
    argv = [str(photos), "--out", str(out), *TINY_FLAGS, "--tasks", "category", "--limit", "3",
            "--vocab", "cityscapes", "--top-k", "3"]  # fmt: skip
    assert main(argv) == 0
    coco = COCO(str(out))
    data = coco.dataset
    from osprey.inference.vocabularies import builtin

    assert [c["name"] for c in data["categories"]] == builtin("cityscapes").names
    assert data["info"]["settings"]["top_k"] == 3
    images = {im["id"]: im["file_name"] for im in data["images"]}
    assert data["annotations"]
    for ann in data["annotations"]:
        top = ann["top_k"]
        assert len(top) == 3 and top == sorted(top, key=lambda t: -t["prob"])
        assert 0 < sum(t["prob"] for t in top) <= 1 + 1e-6
        assert coco.cats[ann["category_id"]]["name"] == top[0]["name"]
        assert isinstance(ann["category_name"], str)  # the generated answer stays beside it
    ann = data["annotations"][0]  # the same numbers as the library call on that region
    image = photos / images[ann["image_id"]]
    mask = coco.annToMask(ann).astype(bool)
    ((expected),) = tiny_osprey.classify(str(image), [mask], "cityscapes", 3)
    assert [t["name"] for t in ann["top_k"]] == [n for n, _ in expected]
    assert [t["prob"] for t in ann["top_k"]] == pytest.approx([p for _, p in expected], abs=1e-5)


def test_vocab_errors_are_one_line_before_any_work(tmp_path, photos, capsys):
    from osprey.core.options import run

    out = str(tmp_path / "x.json")
    assert run(main, [str(photos), "--out", out, "--tiny", "--vocab", "cocoo"]) == 1
    assert "cocoo" in capsys.readouterr().err
    assert run(main, [str(photos), "--out", out, "--tiny", "--vocab", "coco", "--top-k", "99"]) == 1
    assert "--top-k must be between 1 and 50" in capsys.readouterr().err
    listing = tmp_path / "names.txt"
    listing.write_text("dog\ncat\n<mask>\n")
    assert run(main, [str(photos), "--out", out, "--tiny", "--vocab", str(listing)]) == 1
    assert "<mask>" in capsys.readouterr().err
    assert not Path(out).exists() and not shard_dir(out).exists()


def test_cli_errors_are_one_line(tmp_path, photos, capsys):
    from osprey.core.options import run

    out = str(tmp_path / "x.json")
    assert run(main, [str(photos), "--out", out, "--tiny", "--tasks", "colour"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown task(s) colour")
    assert run(main, [str(tmp_path / "none"), "--out", out, "--tiny"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert run(main, [str(photos), "--out", str(tmp_path), "--tiny"]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert run(main, [str(photos), "--out", out, "--model", "no-such-model"]) == 1
    assert "neither a checkpoint folder nor a known model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(photos), "--out", out, "--pred-iou-thresh", "1.5"])
    assert exit_.value.code == 2
    assert not Path(out).exists() and not shard_dir(out).exists()


# ---------------------------------------------------------------------------------------------
# resuming, interrupting, atomic output


def test_rerun_skips_done_images_and_gives_the_same_file(tmp_path, photos, labeller):
    items = list_images(photos)
    first, labelled = run(items[:3], tmp_path / "a.json", labeller)
    assert labelled == [i.file_name for i in items[:3]] and first.new == 3
    _, labelled = run(items, tmp_path / "a.json", labeller)
    assert labelled == [i.file_name for i in items[3:]]  # only what was left
    _, labelled = run(items, tmp_path / "a.json", labeller)
    assert labelled == []
    _, fresh = run(items, tmp_path / "b.json", labeller)
    assert len(fresh) == len(items)
    resumed = json.loads((tmp_path / "a.json").read_text())
    assert resumed == json.loads((tmp_path / "b.json").read_text())
    assert len(resumed["annotations"]) == 9  # no duplicates from the three runs


def test_progress_bar_counts_images_regions_and_skips(tmp_path, photos, labeller, capsys):
    items = list_images(photos)
    run(items[:2], tmp_path / "labels.json", labeller)
    run(items, tmp_path / "labels.json", labeller, progress=True)
    bar = capsys.readouterr().err.splitlines()[-1].split("\r")[-1]
    assert bar.startswith("100%") and "5/5" in bar  # 2 done before, 3 now
    assert "img/s" in bar or "s/img" in bar  # tqdm's rate (inverted when below 1)
    assert " regions/s, 1 skipped]" in bar  # sub/truncated.jpg this time


def test_interrupt_loses_at_most_the_images_in_flight(tmp_path, photos, labeller):
    items = list_images(photos)
    out = tmp_path / "labels.json"
    with pytest.raises(KeyboardInterrupt):
        run(items, out, labeller, stop_after=2)
    assert not out.exists()
    assert len(ShardStore(shard_dir(out)).records()) == 2  # both finished images kept
    _, labelled = run(items, out, labeller)
    assert labelled == [i.file_name for i in items[2:]]
    assert len(json.loads(out.read_text())["images"]) == 3


def test_a_line_cut_short_is_labelled_again(tmp_path, photos, labeller, capsys):
    items = list_images(photos)
    out = tmp_path / "labels.json"
    run(items, out, labeller)
    before = out.read_text()
    (shard,) = shard_dir(out).glob("*.jsonl")
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:-1]) + lines[-1][:40])  # a crash in the middle of a write
    _, labelled = run(items, out, labeller)
    assert labelled == [json.loads(lines[-1])["file_name"]]
    assert "1 unreadable shard line(s) ignored" in capsys.readouterr().err
    assert json.loads(out.read_text()) == json.loads(before)


def test_retry_skipped(tmp_path, photos, labeller):
    items = list_images(photos)
    out = tmp_path / "labels.json"
    run(items, out, labeller)
    _, labelled = run(items, out, labeller, retry_skipped=True)
    assert labelled == ["broken.jpg", "sub/truncated.jpg"]
    assert len(json.loads(out.read_text())["skipped"]) == 2


def test_other_settings_do_not_resume(tmp_path, photos, labeller):
    items = list_images(photos)[:2]
    run(items, tmp_path / "labels.json", labeller)
    other = Labeller(labeller.osprey, labeller.sam, tiny_settings(tasks=("short",)))
    with pytest.raises(UsageError, match=r"other settings.*tasks"):
        run(items, tmp_path / "labels.json", other)


def test_json_is_written_atomically(tmp_path):
    out = tmp_path / "labels.json"
    write_json_atomic(out, {"images": []})
    with pytest.raises(TypeError):
        write_json_atomic(out, {"images": [object()]})  # fails half-way through
    assert json.loads(out.read_text()) == {"images": []}
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_merge_keeps_one_record_per_image(tmp_path):
    store = ShardStore(tmp_path / "s")
    store.open({"model": "m"})
    ann = {"segmentation": encode_rle(np.ones((2, 3), bool)), "area": 6, "bbox": [0, 0, 3, 2]}
    labelled = {"file_name": "a.jpg", "height": 2, "width": 3, "annotations": [ann, ann]}
    skipped = {"file_name": "a.jpg", "skipped": "out of memory"}
    with store.writer() as w:
        w.write(skipped)
        w.write(labelled)
        w.write(labelled)  # a retried task labelled it again
    with store.writer() as w:  # a later run could not (a labelled record wins over a skip)
        w.write(skipped)
    records = store.records()
    assert records == {"a.jpg": labelled}
    data = to_coco([ImageItem("a.jpg", "/x/a.jpg", 5)], records, {})
    assert [(a["id"], a["image_id"]) for a in data["annotations"]] == [(1, 5), (2, 5)]
    assert data["skipped"] == []


# ---------------------------------------------------------------------------------------------
# --regions: caption the masks a dataset already has


def regions_file(path: Path, h: int, w: int) -> list[np.ndarray]:
    """A COCO file for img0.jpg (h x w, named by base name only) with a polygon, a compressed and
    an uncompressed RLE, an empty polygon and a broken RLE; another entry is the wrong size."""
    disc = np.hypot(*np.mgrid[:h, :w] - np.array([h / 2, w / 2])[:, None, None]) < 25
    counts = [len(list(g)) for g in _runs(disc.flatten(order="F"))]
    polygon = [[20, 10, 60, 10, 60, 40, 20, 40]]
    anns = [
        {"id": 11, "image_id": 1, "segmentation": polygon},
        {"id": 12, "image_id": 1, "segmentation": encode_rle(disc)},
        {"id": 13, "image_id": 1, "segmentation": {"size": [h, w], "counts": counts}},
        {"id": 14, "image_id": 1, "segmentation": [[1, 1, 1, 1, 1, 1]]},
        {"id": 15, "image_id": 1, "segmentation": {"size": [h, w], "counts": "#corrupt"}},
        {"id": 16, "image_id": 2, "segmentation": polygon},
    ]
    images = [{"id": 1, "file_name": "train/img0.jpg", "height": h, "width": w},
              {"id": 2, "file_name": "img2.png", "height": 1, "width": 1}]  # fmt: skip
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return [polygon_mask(polygon, h, w), disc, disc]


def _runs(flat: np.ndarray):
    """Runs of equal values, starting with a (possibly empty) run of zeros (COCO's order)."""
    from itertools import groupby

    groups = [list(g) for _, g in groupby(flat.tolist())]
    return ([[]] if flat[0] else []) + groups


def polygon_mask(polygon, h, w) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, h, w))).astype(bool)


def test_regions_file_labels_the_given_masks(tmp_path, photos):
    h, w = SIZES[0]
    expected = regions_file(tmp_path / "gt.json", h, w)
    out = tmp_path / "captions.json"
    argv = [str(photos), "--out", str(out), *TINY_FLAGS, "--regions", str(tmp_path / "gt.json")]
    assert main(argv) == 0
    coco = COCO(str(out))
    data = coco.dataset
    assert [im["file_name"] for im in data["images"]] == ["img0.jpg"]
    anns = data["annotations"]
    assert [a["source_id"] for a in anns] == [11, 12, 13]  # the file's order, ids kept
    for ann, mask in zip(anns, expected, strict=True):
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
        assert isinstance(ann["segmentation"]["counts"], str)  # compressed RLE out
        assert "score" not in ann and ann["caption"]
    dropped = {d["source_id"]: d["reason"] for d in data["dropped"]}
    assert set(dropped) == {14, 15} and "empty" in dropped[14] and "corrupt" in dropped[15]
    skipped = {s["file_name"]: s["reason"] for s in data["skipped"]}
    assert (
        "1x1" in skipped["img2.png"]
        and "has no image named sub/img1.jpg" in skipped["sub/img1.jpg"]
    )


def test_region_index_matches_by_base_name_only_when_unique():
    entry = {"height": 1, "width": 1, "annotations": []}
    index = RegionIndex({"a/x.jpg": entry, "b/x.jpg": dict(entry), "c/y.jpg": dict(entry)})
    assert index.find("a/x.jpg") is entry
    assert index.find("x.jpg") is None  # ambiguous
    assert index.find("other/y.jpg") is index.entries["c/y.jpg"]


# ---------------------------------------------------------------------------------------------
# the README's offline example


@pytest.mark.slow
def test_readme_label_example_runs(tmp_path):
    lang, code = blocks()["label"]
    assert lang == "bash" and "/tmp/osprey-labels.json" in code
    code = code.replace("/tmp/osprey-labels.json", str(tmp_path / "labels.json"))
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=600, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 images (0 skipped), 16 regions" in out.stdout
    assert out.stdout.strip().endswith("16")  # pycocotools read 16 annotations back
