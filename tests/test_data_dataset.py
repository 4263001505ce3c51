"""The tokenising dataset and the collator: golden supervision per source, rejections that are
counted instead of dropped, context fitting, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osprey.core import constants as C
from osprey.data.collate import Collator
from osprey.data.dataset import EncodeSettings, OspreyDataset, training_template
from osprey.data.registry import build_source
from tests.support.data import write_tree as write_data_tree


@pytest.fixture(scope="module")
def tree(voc, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, write_data_tree(voc, root)


@pytest.fixture(scope="module")
def tokenizer():
    from osprey.model.llm import load_tokenizer
    from osprey.model.tiny import tiny_tokenizer_dir

    return load_tokenizer(tiny_tokenizer_dir(), C.MASK_TOKEN_ID, C.POS_TOKEN_ID)


def _settings(tokenizer, max_length: int = 2048) -> EncodeSettings:
    return EncodeSettings(
        num_image_tokens=1024,
        mask_token_id=C.MASK_TOKEN_ID,
        pos_token_id=C.POS_TOKEN_ID,
        template=training_template(tokenizer),
        max_length=max_length,
        image_size=512,
    )


def _dataset(tree, tokenizer, names, max_length=2048, **spec_extra):
    root, specs = tree
    sources = [build_source({**specs[n], **spec_extra}, root) for n in names]
    return OspreyDataset(sources, tokenizer, _settings(tokenizer, max_length), seed=7)


def supervised_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    runs, prev = [], False
    for tok, lab in zip(ids, labels):
        if lab != C.IGNORE_INDEX:
            if not prev:
                runs.append([])
            runs[-1].append(tok)
        prev = lab != C.IGNORE_INDEX
    return runs


SOURCES = [
    "coco",
    "pascal_part",
    "refcoco",
    "vg",
    "vcr",
    "osprey_conversation",
    "osprey_short_form",
    "osprey_part_level",
    "osprey_detail_description",
    "osprey_lvis_posneg",
    "llava_caption",
    "llava_mix",
]


@pytest.mark.parametrize("name", SOURCES)
def test_golden_supervision_is_exactly_the_answers(tree, tokenizer, name):
    """Decode the supervised runs of every source's item: one per answer, answer + </s>, nothing
    else; image and region positions are never supervised and the counts match the item."""
    ds = _dataset(tree, tokenizer, [name])
    item = ds[0]
    source, local = ds.locate(0)
    sample = source.sample(local, np.random.default_rng([ds.seed, ds.epoch, 0]))
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    runs = supervised_runs(ids, labels)
    decoded = [tokenizer.decode(run).strip() for run in runs]
    assert decoded == [t.assistant.strip() + "</s>" for t in sample.turns]
    assert all(lab == tok for tok, lab in zip(ids, labels) if lab != C.IGNORE_INDEX)
    slots = [
        i for i, t in enumerate(ids) if t in (C.IMAGE_TOKEN_INDEX, C.MASK_TOKEN_ID, C.POS_TOKEN_ID)
    ]
    assert all(labels[i] == C.IGNORE_INDEX for i in slots)
    n_regions = ids.count(C.MASK_TOKEN_ID)
    if item["pixel_values"] is None:
        assert C.IMAGE_TOKEN_INDEX not in ids and item["masks"] is None
    else:
        assert ids.count(C.IMAGE_TOKEN_INDEX) == 1024 and item["pixel_values"].shape == (
            3,
            512,
            512,
        )
        assert item["masks"].shape == (n_regions, 375, 500) and item["masks"].dtype == torch.bool
        assert all(bool(m.any()) for m in item["masks"])
    assert item["events"][f"{source.name}/samples"] == 1


def test_prompt_text_is_the_vicuna_v1_training_template(tree, tokenizer):
    ds = _dataset(tree, tokenizer, ["refcoco"])
    ids = [t for t in ds[0]["input_ids"].tolist() if t >= 0]
    text = tokenizer.decode(ids)
    assert text.startswith("<s> A chat between a curious user and an artificial intelligence")
    assert "USER: " in text and "ASSISTANT: the man on the left</s>" in text


def test_same_index_same_sample_until_the_epoch_changes(tree, tokenizer):
    ds = _dataset(tree, tokenizer, ["coco"])
    a, b = ds[0], ds[0]
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["masks"], b["masks"])
    ds.set_epoch(1)
    assert not torch.equal(a["masks"], ds[0]["masks"])  # regions reshuffled in a new epoch


def test_context_budget_drops_trailing_turns_and_counts_them(tree, tokenizer):
    full = _dataset(tree, tokenizer, ["coco"])[0]
    short = _dataset(tree, tokenizer, ["coco"], max_length=1200)[0]
    assert len(short["input_ids"]) <= 1200 < len(full["input_ids"])
    dropped = short["events"]["coco/truncated/turns"]
    assert dropped > 0 and short["events"]["coco/truncated/regions"] == dropped
    assert short["masks"].shape[0] == full["masks"].shape[0] - dropped
    assert torch.equal(short["masks"], full["masks"][: short["masks"].shape[0]])


def test_rejected_records_are_counted_and_replaced(tree, tokenizer, tmp_path):
    """A record whose image is missing is reported and the next record stands in for it."""
    root, specs = tree
    broken = build_source({**specs["refcoco"], "image_dir": tmp_path}, root)
    good = build_source(specs["llava_caption"], root)
    ds = OspreyDataset([broken, good], tokenizer, _settings(tokenizer))
    item = ds[0]
    assert item["events"]["refcoco/rejected/unreadable_image"] == 2
    assert item["events"]["llava/samples"] == 1
    alone = OspreyDataset([broken], tokenizer, _settings(tokenizer))
    with pytest.raises(RuntimeError, match="consecutive records"):
        alone[0]


def test_size_mismatch_between_annotation_and_image_is_rejected(tree, tokenizer, voc):
    from PIL import Image

    root, specs = tree
    small = root / "small"
    small.mkdir(exist_ok=True)
    Image.fromarray(voc["rgb"][:300]).save(small / "000000000001.jpg")
    src = build_source({**specs["refcoco"], "image_dir": "small"}, root)
    ds = OspreyDataset(
        [src, build_source(specs["llava_caption"], root)], tokenizer, _settings(tokenizer)
    )
    assert ds[0]["events"]["refcoco/rejected/image_size_mismatch"] == 2


def test_training_template_uses_the_tokenizers_eos(tokenizer):
    assert training_template(tokenizer).sep2 == "</s>"

    class Other:
        eos_token = "<|im_end|>"

    assert training_template(Other()).sep2 == "<|im_end|>"


def test_collator_pads_right_and_keeps_masks_per_image(tree, tokenizer):
    ds = _dataset(tree, tokenizer, ["llava_mix", "refcoco"])
    items = [ds[1], ds[0], ds[2]]  # text-only, image without regions, image with one region
    batch = Collator(pad_token_id=0)(items)
    lengths = [len(it["input_ids"]) for it in items]
    assert batch["input_ids"].shape == (3, max(lengths))
    for b, n in enumerate(lengths):
        assert batch["attention_mask"][b].sum() == n and batch["attention_mask"][b, :n].all()
        assert (batch["input_ids"][b, n:] == 0).all() and (
            batch["labels"][b, n:] == C.IGNORE_INDEX
        ).all()
        assert torch.equal(batch["input_ids"][b, :n], items[b]["input_ids"])
    assert batch["pixel_values"].shape == (2, 3, 512, 512)  # the text-only item has none
    assert [m.shape[0] for m in batch["masks"]] == [0, 1]
    assert batch["events"]["llava/samples"] == 2 and batch["events"]["refcoco/samples"] == 1


def test_collated_events_survive_pinning(tree, tokenizer):
    """torch's pin_memory copies a mapping and update()s the copy with pinned values: the events
    must be a plain dict, or the counts would double (seen on a CUDA run)."""
    import copy

    ds = _dataset(tree, tokenizer, ["refcoco"])
    events = Collator(pad_token_id=0)([ds[0], ds[1]])["events"]
    clone = copy.copy(events)
    clone.update({k: v for k, v in events.items()})
    assert clone == events == {"refcoco/samples": 2}
