"""Per-source loaders on real-format records around the real VOC photo and its instance masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from osprey.core import prompt_strings as P
from osprey.data.registry import ORIGINAL_NAMES, SpecError, build_source, source_class
from osprey.data.sources.base import image_first
from osprey.data.sources.vcr import name_objects, rasterize_in_box
from tests.support.data import COCO2014, CONVERSATION, DESCRIPTIONS, IMAGE, LVIS, REGIONS, VCR_TEXTS
from tests.support.data import write_tree as write_data_tree


@pytest.fixture(scope="module")
def tree(voc, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, write_data_tree(voc, root)


def _source(tree, name, **extra):
    root, specs = tree
    return build_source({**specs[name], **extra}, root)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _owner(mask: np.ndarray, voc) -> int:
    """Index of the VOC instance a decoded mask comes from (best IoU)."""
    return int(np.argmax([_iou(mask, m) for m in voc["masks"]]))


# ---------------------------------------------------------------------------------------------
# string rules


def test_image_first_reproduces_the_original_normalisation():
    assert image_first("Describe it.\n<image>") == "<image>\nDescribe it."
    assert image_first("<image>.\nThis provides an overview of the picture.\nQ") == (
        "<image>\n.\nThis provides an overview of the picture.\nQ"
    )
    assert image_first(P.BEGIN_PASCAL_PART + P.REGION).startswith("<image>\nIn the conversation")
    assert image_first(P.BEGIN + "Q? ") == P.BEGIN + "Q?"  # trailing space stripped
    assert image_first("no image here ") == "no image here "


# ---------------------------------------------------------------------------------------------
# stage 2


def test_coco_regions_turns_answers_and_masks(tree, voc):
    src = _source(tree, "coco")
    assert len(src) == 1 and src.skipped["image_without_annotations"] == 1
    sample = src.sample(0, np.random.default_rng(0))
    assert sample.image_path.name == IMAGE and sample.size == (375, 500)
    # 19 real instances + 1 degenerate polygon; the empty one is dropped and counted
    assert len(sample.turns) == len(sample.masks) == 19
    assert sample.events["empty_mask"] == 1
    assert sample.turns[0].user == P.BEGIN_COCO + P.REGION
    assert all(t.user == P.REGION for t in sample.turns[1:])
    exact = [m for m in sample.masks if max(_iou(m, v) for v in voc["masks"]) == 1.0]
    assert len(exact) == 9  # the odd instances are stored as RLE: decoded exactly
    for turn, mask in zip(sample.turns, sample.masks):
        k = _owner(mask, voc)
        if k % 2 or voc["masks"][k].sum() > 2000:  # RLE, or a polygon of a solid region
            assert turn.assistant == voc["class_names"][voc["labels"][k]]
            assert _iou(mask, voc["masks"][k]) > (0.999 if k % 2 else 0.85)


def test_coco_regions_are_shuffled_by_the_generator(tree):
    src = _source(tree, "coco")
    a = [m.sum() for m in src.sample(0, np.random.default_rng(1)).masks]
    b = [m.sum() for m in src.sample(0, np.random.default_rng(1)).masks]
    c = [m.sum() for m in src.sample(0, np.random.default_rng(2)).masks]
    assert a == b and a != c


def test_pascal_part_cap_and_instruction(tree):
    src = _source(tree, "pascal_part")
    sample = src.sample(0, np.random.default_rng(0))
    assert len(sample.turns) == 15  # 19 real regions + 1 empty one: 5 left out, all counted
    assert sample.events["regions_over_cap"] + sample.events["empty_mask"] == 5
    # the original's normaliser removes the space after "<image>\n"; the missing one stays
    assert sample.turns[0].user.startswith("<image>\nIn the conversation below")
    assert "what you seein the image" in sample.turns[0].user
    assert all(t.assistant.endswith(":body") for t in sample.turns)
    assert (
        len(_source(tree, "pascal_part", max_regions=4).sample(0, np.random.default_rng(0)).turns)
        == 4
    )


def test_refcoco_file_name_tail_and_caption_answers(tree):
    src = _source(tree, "refcoco")
    assert len(src) == 2
    first = src.sample(0, np.random.default_rng(0))
    assert first.image_path.name == IMAGE  # COCO_train2014_000000000001.jpg -> 000000000001.jpg
    assert [t.assistant for t in first.turns] == ["the man on the left"]
    assert first.turns[0].user == P.BEGIN_REFCOCO + P.REGION  # no newline before the region
    plus = _source(tree, "refcoco", type="refcoco+").sample(1, np.random.default_rng(0))
    assert plus.turns[0].user == P.BEGIN_REFCOCO_PLUS + P.REGION
    assert plus.turns[0].assistant == "person in the middle"


def test_visual_genome_ignore_cap_and_questions(tree):
    src = _source(tree, "vg")
    assert src.skipped["ignored_regions"] == 1
    sample = src.sample(0, np.random.default_rng(3))
    assert len(sample.turns) == 3
    templates = {q.strip().replace(P.REGION_REF, P.REGION) for q in P.SHORT_QUESTIONS}
    for i, turn in enumerate(sample.turns):
        body = turn.user.removeprefix(P.BEGIN) if i == 0 else turn.user
        assert turn.user.startswith(P.BEGIN) == (i == 0)
        assert body.endswith(P.LIMIT_SHORT_PHRASE)
        assert body.removesuffix(P.LIMIT_SHORT_PHRASE) in templates
        assert turn.assistant.startswith("a ") and turn.assistant != "x"  # never the ignored one


# ---------------------------------------------------------------------------------------------
# Osprey-724K


def test_724k_conversation_format(tree, voc):
    src = _source(tree, "osprey_conversation")
    assert len(src) == 1 and src.rejected["region_ref_out_of_range"] == 1
    sample = src.sample(0, np.random.default_rng(0))
    assert sample.image_path.name == IMAGE  # part after the last "_"
    regions = "region1<mask><pos>,region2<mask><pos>,region3<mask><pos>"
    assert sample.turns[0].user == (
        P.BEGIN + f"Ther are 3 part regions in the picture: {regions}. What is region1 doing?"
    )
    assert sample.turns[0].assistant == "The person in region1 is sitting at a table."
    assert sample.turns[1].user == "How is region2 related to region3?"
    assert [_owner(m, voc) for m in sample.masks] == list(REGIONS)


@pytest.mark.parametrize("name", ["osprey_short_form", "osprey_part_level"])
def test_724k_short_answers_get_the_limit_on_every_question(tree, name):
    sample = _source(tree, name).sample(0, np.random.default_rng(0))
    assert all(t.user.endswith(P.LIMIT_SINGLE_WORD) for t in sample.turns)
    assert "<region" not in "".join(t.user + t.assistant for t in sample.turns)


def test_724k_detail_description(tree, voc):
    sample = _source(tree, "osprey_detail_description").sample(0, np.random.default_rng(5))
    assert [t.assistant for t in sample.turns] == list(DESCRIPTIONS)
    templates = {q.replace(P.REGION_REF, P.REGION) for q in P.DETAILED_QUESTIONS}
    assert sample.turns[0].user.removeprefix(P.BEGIN) in templates
    assert all(t.user in templates for t in sample.turns[1:])
    assert [_owner(m, voc) for m in sample.masks] == list(REGIONS)


def test_724k_detail_file_name_quirk(tree):
    """The config may name either osprey_detail_description.json (HF) or ..._detailed_... ."""
    root, specs = tree
    spec = {**specs["osprey_detail_description"]}
    spec["ann_file"] = spec["ann_file"].replace("detail_description", "detailed_description")
    assert not (root / spec["ann_file"]).exists()
    assert len(build_source(spec, root)) == 1


def test_724k_lvis_binds_regions_in_place(tree, voc):
    src = _source(tree, "osprey_lvis_posneg")
    assert src.rejected["region_ref_out_of_range"] == 1
    sample = src.sample(0, np.random.default_rng(0))
    assert [t.user for t in sample.turns] == [
        P.BEGIN + "Is <mask><pos> a person?",
        "Is <mask><pos> a dog?",
        "<mask><pos>?",
    ]
    assert [t.assistant for t in sample.turns] == [a for _, a in LVIS]
    assert [_owner(m, voc) for m in sample.masks] == list(REGIONS)


def test_724k_file_names_and_out_of_order_references(tmp_path, voc):
    """LVIS names are used as they are (others keep the tail); <regionK> binds to region K."""
    from tests.support.data import _724k_base, _conv

    record = {**_724k_base(voc, "lvis_v1_000000000001.jpg")}
    record["conversations"] = _conv(("Is <region2> a cup?", "No"), ("And <region1>?", "Yes"))
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps([record]))
    lvis = build_source({"type": "OspreyLVISPosNeg", "ann_file": path, "img_prefix": tmp_path})
    sample = lvis.sample(0, np.random.default_rng(0))
    assert sample.image_path.name == "lvis_v1_000000000001.jpg"
    assert [_owner(m, voc) for m in sample.masks] == [REGIONS[1], REGIONS[0]]
    conv = build_source({"type": "OspreyConversations", "ann_file": path, "image_dir": tmp_path})
    assert conv.sample(0, np.random.default_rng(0)).image_path.name == IMAGE


def test_724k_malformed_records_are_counted(tmp_path, voc):
    from tests.support.data import _724k_base, _conv

    good = {**_724k_base(voc), "conversations": _conv(*CONVERSATION)}
    records = [
        good,
        {k: v for k, v in good.items() if k != "annotation"},
        {**good, "annotation": []},
        {**good, "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]},
        {**good, "conversations": []},
    ]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(records))
    src = build_source({"type": "osprey_conversation", "ann_file": path, "image_dir": tmp_path})
    assert len(src) == 1
    assert dict(src.rejected) == {
        "malformed_record": 1,
        "no_regions": 1,
        "bad_roles": 1,
        "no_turns": 1,
    }


def test_724k_empty_mask_rejects_the_sample(tmp_path, voc):
    from osprey.data.sample import Rejected
    from tests.support.data import _724k_base, _conv

    record = {**_724k_base(voc), "conversations": _conv(*CONVERSATION)}
    record["annotation"][1]["segmentation"] = [[1, 1, 1, 1, 1, 1]]
    path = tmp_path / "c.json"
    path.write_text(json.dumps([record]))
    src = build_source({"type": "osprey_conversation", "ann_file": path, "image_dir": tmp_path})
    with pytest.raises(Rejected) as err:
        src.sample(0, np.random.default_rng(0))
    assert err.value.reason == "empty_mask"


# ---------------------------------------------------------------------------------------------
# VCR


def test_vcr_conversation(tree):
    src = _source(tree, "vcr")
    assert len(src) == 1 and src.rejected["number_not_an_object"] == 1
    sample = src.sample(0, np.random.default_rng(0))
    first, why = sample.turns
    listing = P.vcr_region_list(2)
    prefixes = {p.replace(P.REGION_REF, listing) for p in P.VCR_REGION_PREFIXES}
    body = first.user.removeprefix(P.BEGIN_DOT)
    question = "What is person at region1 doing next to person at region2?"
    assert body.endswith(question) and body.removesuffix(question) in prefixes
    assert first.assistant == "person at region1 is sitting at the table with person at region2."
    assert why.user in P.WHY_QUESTIONS
    assert why.assistant == "person at region2 is looking at person at region1."


def test_vcr_numbers_are_one_based():
    objects = ["person", "dog"]
    assert name_objects("Is 2 near 1?", objects) == "Is dog at region2 near person at region1?"
    # the original looked up index K: the next object's class
    assert name_objects("Is 1 here?", objects, original_indexing=True) == "Is dog at region1 here?"


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon (the test's own reference for the original's sampling)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((crosses & (x < xs)).sum(axis=1) % 2).astype(bool)


def test_vcr_rasterisation_matches_the_original_sampling(voc):
    """cv2.fillPoly on the box's sampling grid vs point-in-polygon tests at the grid points
    (what the original did with matplotlib): they differ only on polygon edges."""
    import cv2

    for k in REGIONS:
        mask = voc["masks"][k]
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        polys = [c.reshape(-1, 2).astype(float) for c in contours if len(c) >= 3]
        ys, xs = np.nonzero(mask)
        box = [xs.min() - 0.3, ys.min() + 0.2, xs.max() + 1.4, ys.max() + 0.9]  # fractional box
        ours = rasterize_in_box([p.tolist() for p in polys], box, *mask.shape)
        ix1, iy1, ix2, iy2 = (round(v) for v in box)
        bw, bh = ix2 - ix1, iy2 - iy1
        gx = box[0] + (np.arange(bw) + 0.5) * (box[2] - box[0]) / bw
        gy = box[1] + (np.arange(bh) + 0.5) * (box[3] - box[1]) / bh
        pts = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        ref = np.zeros(bh * bw, dtype=bool)
        for p in polys:
            ref |= _inside(pts, p)
        ref_full = np.zeros_like(mask)
        ref_full[iy1:iy2, ix1:ix2] = ref.reshape(bh, bw)
        differ = ours ^ ref_full
        assert differ.sum() <= 0.03 * ref_full.sum(), (k, differ.sum(), ref_full.sum())
        assert _iou(ours, mask) > 0.9


def test_vcr_box_outside_the_image_is_clipped():
    square = [[[2, 2], [8, 2], [8, 8], [2, 8]]]
    out = rasterize_in_box(square, [-3, -3, 5, 5], 10, 10)
    assert out.shape == (10, 10) and out[2:5, 2:5].all() and not out[6:, :].any()


# ---------------------------------------------------------------------------------------------
# LLaVA


def test_llava_caption_pairs_move_the_image_first(tree):
    sample = _source(tree, "llava_caption").sample(0, np.random.default_rng(0))
    assert sample.turns[0].user == "<image>\nRender a clear and concise summary of the photo."
    assert sample.turns[0].assistant == "people sitting at a table" and not sample.masks


def test_llava_text_only_records_kept_or_skipped(tree):
    kept = _source(tree, "llava_mix")
    assert len(kept) == 2 and kept.sample(1, np.random.default_rng(0)).image_path is None
    skipped = _source(tree, "llava_mix", text_only="skip")
    assert len(skipped) == 1 and skipped.skipped["text_only"] == 1


def test_llava_image_token_without_image_is_rejected(tmp_path):
    records = [
        {
            "id": "x",
            "conversations": [
                {"from": "human", "value": "<image>\nHi"},
                {"from": "gpt", "value": "Hello"},
            ],
        }
    ]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(records))
    src = build_source({"type": "llava", "ann_file": path, "image_dir": tmp_path})
    assert len(src) == 0 and src.rejected["image_token_without_image"] == 1


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_names_and_errors(tree):
    root, specs = tree
    assert all(source_class(name).name for name in ORIGINAL_NAMES)
    assert source_class("VGDATA").name == "vg" and source_class("coco_data").name == "coco"
    with pytest.raises(SpecError, match="unknown dataset type"):
        build_source({"type": "nope", "ann_file": "a", "image_dir": "b"}, root)
    with pytest.raises(SpecError, match="unknown options"):
        build_source({**specs["coco"], "max_regionz": 3}, root)
    with pytest.raises(SpecError, match="needs 'image_dir'"):
        build_source({"type": "coco", "ann_file": "x"}, root)
    with pytest.raises(FileNotFoundError):
        build_source({"type": "coco", "ann_file": "missing.json", "image_dir": "x"}, root)
    assert COCO2014.endswith(IMAGE) and VCR_TEXTS
