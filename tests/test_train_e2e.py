"""End to end: the three stages chained through ``python -m osprey.train``'s main() on data in the
published formats around the real VOC photo, then resume, LoRA, and the inference API.

The runs use a tiny model at 256 px (256 image tokens instead of 1024, to fit the CPU budget; the
data path is the same). The tiny model's LLM is initialised with large weights (see osprey.model.tiny) so
that its outputs depend on its inputs: at transformers' std 0.02 attention is uniform and the
logits near zero, so neither the projector nor the extractor could move the loss. LRs are high and
constant so that a dozen steps show learning; seeds are fixed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from osprey.model.checkpoint import load_osprey, read_tensors, save_osprey, weight_files
from osprey.model.config import tiny_config
from osprey.train.train import main
from tests.support.data import write_tree as write_data_tree

BASE = {
    "bf16": False,
    "dataloader_num_workers": 0,
    "report_to": "none",
    "logging_steps": 1,
    "warmup_ratio": 0.0,
    "lr_scheduler_type": "constant",
    "seed": 0,
    "gradient_checkpointing": False,
    "save_steps": 1000,
    "save_total_limit": None,
    "resume_from_checkpoint": None,
}
STAGE3_DATA = [
    "osprey_conversation",
    "osprey_short_form",
    "osprey_detail_description",
    "osprey_lvis_posneg",
    "vg",
    "vcr",
    "llava_mix",  # one image conversation, one text-only
]


def _train(root: Path, name: str, **cfg) -> Path:
    out = root / name
    path = root / f"{name}.json"
    path.write_text(json.dumps({**BASE, "output_dir": str(out), **cfg}))
    assert main(["--config", str(path)]) == 0
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return dict(read_tensors(weight_files(path)))


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def _decreased(losses: dict[int, float], k: int = 4) -> tuple[float, float]:
    values = [losses[s] for s in sorted(losses)]
    return sum(values[:k]) / k, sum(values[-k:]) / k


def _check_parts(before: dict, after: dict, trained: tuple[str, ...]) -> None:
    """Frozen tensors bit-identical; every trainable tensor moved."""
    assert before.keys() == after.keys()
    for key, old in before.items():
        part = key.split(".")[0]
        if part in trained:
            assert not torch.equal(old, after[key]), f"{key} did not move"
        else:
            assert torch.equal(old, after[key]), f"{key} is frozen in this stage but changed"


@pytest.fixture(scope="module")
def runs(voc, tmp_path_factory):
    """Stage 1 -> stage 2 (from the stage-1 projector) -> stage 3 (from the stage-2 checkpoint,
    checkpoint at step 6 of 10) -> stage 3 again, resumed from that checkpoint."""
    from osprey.model.tiny import build_tiny

    root = tmp_path_factory.mktemp("train")
    specs = write_data_tree(voc, root)
    config = tiny_config()
    config = replace(config, vision=replace(config.vision, image_size=256))
    model, tok = build_tiny(seed=0, config=config)  # its LLM is initialised at std 0.4 already
    save_osprey(model, tok, root / "init")
    data = {"data_root": str(root)}
    s1 = _train(root, "stage1", stage=1, model_path=str(root / "init"), learning_rate=1e-2,
                max_steps=10, datasets=[specs["llava_caption"]], **data)  # fmt: skip
    s2 = _train(root, "stage2", stage=2, model_path=str(root / "init"), learning_rate=0.1,
                projector_path=str(s1 / "mm_projector.bin"), max_steps=16,
                datasets=[specs["refcoco"]], **data)  # fmt: skip
    stage3 = dict(stage=3, model_path=str(s2), learning_rate=1e-3, max_steps=10, save_steps=6,
                  per_device_train_batch_size=2, gradient_checkpointing=True,
                  datasets=[specs[n] for n in STAGE3_DATA], **data)  # fmt: skip
    s3 = _train(root, "stage3", **stage3, report_to="tensorboard", export_original=True)
    s3r = _train(root, "stage3_resumed", **stage3, resume_from_checkpoint=str(s3 / "checkpoint-6"))
    return {"root": root, "init": root / "init", "s1": s1, "s2": s2, "s3": s3, "s3r": s3r}


# ---------------------------------------------------------------------------------------------
# the stages


def test_stage1_trains_only_the_projector(runs):
    _check_parts(_weights(runs["init"]), _weights(runs["s1"]), ("projector",))
    first, last = _decreased(_losses(runs["s1"]))
    assert last < first - 0.5, (first, last)
    assert (runs["s1"] / "mm_projector.bin").is_file()


def test_stage2_starts_from_the_stage1_projector_and_trains_only_the_extractor(runs):
    init, s1, s2 = _weights(runs["init"]), _weights(runs["s1"]), _weights(runs["s2"])
    start = {k: (s1[k] if k.startswith("projector.") else v) for k, v in init.items()}
    _check_parts(start, s2, ("mask_extractor",))
    first, last = _decreased(_losses(runs["s2"]))
    assert last < first - 0.1, (first, last)


def test_stage3_trains_llm_projector_and_extractor_with_vision_frozen(runs):
    _check_parts(_weights(runs["s2"]), _weights(runs["s3"]), ("llm", "projector", "mask_extractor"))
    first, last = _decreased(_losses(runs["s3"]), k=3)
    assert last < first - 0.3, (first, last)


def test_stage3_saw_every_source_and_reported_the_data(runs):
    report = json.loads((runs["s3"] / "data_report.json").read_text())
    names = {r["type"] for r in report["sources"]}
    assert names == {*STAGE3_DATA[:-1], "llava"}
    events = report["events"]
    assert all(events.get(f"{n}/samples", 0) > 0 for n in names)
    rejected = {r["type"]: r["rejected"] for r in report["sources"]}
    assert rejected["osprey_conversation"] == {"region_ref_out_of_range": 1}
    assert rejected["vcr"] == {"number_not_an_object": 1}
    assert list((runs["s3"] / "runs").rglob("events.out.tfevents*")), "no TensorBoard log"


# ---------------------------------------------------------------------------------------------
# resume


def test_resume_continues_at_the_saved_step_and_data_position(runs):
    """The resumed run starts at global step 6, sees exactly the batches the uninterrupted run saw
    (same losses at steps 7-10: same data in the same order, same weights, same optimizer and
    scheduler state) and ends with the same weights."""
    full, resumed = _losses(runs["s3"]), _losses(runs["s3r"])
    state = json.loads((runs["s3r"] / "trainer_state.json").read_text())
    assert state["global_step"] == 10
    assert sorted(resumed) == sorted(full) == list(range(1, 11))
    for step in range(7, 11):
        assert resumed[step] == pytest.approx(full[step], abs=1e-5), step
    a, b = _weights(runs["s3"]), _weights(runs["s3r"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    ckpt = runs["s3"] / "checkpoint-6"
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "osprey_config.json"):
        assert (ckpt / name).is_file(), name


# ---------------------------------------------------------------------------------------------
# the result is a usable Osprey model


def test_trained_checkpoint_loads_and_generates_with_the_pipeline(runs, voc):
    from osprey.inference.facade import Generation, Osprey

    osp = Osprey(*load_osprey(runs["s3"]), name="stage3")
    assert osp.model.config.vision.image_size == 256
    gen = Generation(max_new_tokens=4)
    answers = osp.describe(voc["rgb"], voc["masks"][15:17], task="short", gen=gen)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    answer = osp.ask(voc["rgb"], voc["masks"][15:17], "What is region1 doing?", gen=gen)
    assert answer.new_tokens > 0


def test_original_format_export_round_trips(runs):
    ours, _ = load_osprey(runs["s3"])
    original, _ = load_osprey(runs["s3"] / "original", base_config=ours.config)
    theirs = original.state_dict()
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(theirs[key].float(), value.float(), rtol=0, atol=2e-2)


def test_lora_finetune_merges_into_a_plain_checkpoint(runs):
    """LoRA on the stage-3 result: adapters train, the LLM's own weights stay frozen until the
    merge, vision stays bit-identical, and the saved model is a plain Osprey checkpoint."""
    root = runs["root"]
    specs = write_data_tree.__globals__  # noqa: F841 (keep fixture data in one place)
    out = _train(root, "lora", stage=3, model_path=str(runs["s3"]), learning_rate=1e-2,
                 max_steps=3, lora=True, lora_r=4, lora_alpha=8,
                 datasets=[{"type": "osprey_conversation",
                            "ann_file": "Osprey-724K/osprey_conversation.json",
                            "image_dir": "images"}], data_root=str(root))  # fmt: skip
    before, after = _weights(runs["s3"]), _weights(out)
    assert before.keys() == after.keys()  # merged: no lora_ keys, no peft prefixes
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("vision."))
    moved = [k for k in before if k.startswith("llm.") and not torch.equal(before[k], after[k])]
    assert moved and all(k.endswith("proj.weight") for k in moved)  # adapters merged into Linears
    assert not torch.equal(before["projector.0.weight"], after["projector.0.weight"])
    model, _ = load_osprey(out)
    assert type(model.llm).__name__ == "LlamaForCausalLM"
