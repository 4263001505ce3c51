"""Checkpoint formats: the released layout (strict, with its quirks) and ours; round trips."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from osprey.inference.facade import Osprey
from osprey.inference.prompt_format import TEMPLATES, Turn, render, task_message
from osprey.model.checkpoint import (
    CheckpointError,
    export_original,
    load_osprey,
    original_key_shapes,
    read_tensors,
    save_osprey,
)
from osprey.model.config import OspreyConfig, tiny_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_full_size_key_set_is_the_released_one():
    shapes = original_key_shapes()
    assert (
        len(shapes) == 656
    )  # + 32 rotary inv_freq buffers = the 688 entries of the released index
    assert len(shapes) + 32 == 688
    assert shapes["model.embed_tokens.weight"] == (32000, 4096) and shapes["lm_head.weight"] == (
        32000,
        4096,
    )
    assert shapes["model.layers.31.mlp.down_proj.weight"] == (4096, 11008)
    assert shapes["model.mm_projector.0.weight"] == (4096, 768) and shapes[
        "model.mm_projector.2.bias"
    ] == (4096,)
    assert shapes["mask_extractor.mask_linear.layers.0.weight"] == (1024, 12544)
    assert shapes["model.vision_tower.vision_tower.visual.trunk.stages.2.blocks.26.gamma"] == (768,)
    assert shapes["model.vision_tower.vision_tower.visual.head.mlp.fc2.weight"] == (768, 1536)
    assert "model.vision_tower.vision_tower.visual.head.mlp.fc2.bias" not in shapes
    assert sum(k.endswith(".gamma") for k in shapes) == 36
    vision = [k for k in shapes if k.startswith("model.vision_tower.")]
    assert len(vision) == 345 and sum(k.startswith("mask_extractor.") for k in shapes) == 16


def test_info_cli_prints_the_key_list():
    out = subprocess.run(
        [sys.executable, "-m", "osprey", "info", "osprey-7b", "--keys", "original"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 656
    assert "model.norm.weight\t4096" in out and "model.embed_tokens.weight\t32000,4096" in out


@pytest.fixture(scope="module")
def released_dir(tiny_parts, tmp_path_factory):
    """The tiny model written in the exact released on-disk format (fp32 to compare bit for bit)."""
    model, tok = tiny_parts
    return export_original(model, tok, tmp_path_factory.mktemp("released"), dtype=torch.float32)


def _prompt():
    return render([Turn(task_message("category"))], TEMPLATES["osprey_v1"])[0]


def test_released_format_on_disk(released_dir):
    names = sorted(p.name for p in released_dir.iterdir())
    assert "pytorch_model-00001-of-00002.bin" in names and "pytorch_model.bin.index.json" in names
    assert {"config.json", "added_tokens.json", "tokenizer.model", "tokenizer_config.json"} <= set(
        names
    )
    index = json.loads((released_dir / "pytorch_model.bin.index.json").read_text())
    assert sum(k.endswith("rotary_emb.inv_freq") for k in index["weight_map"]) == 2
    assert json.loads((released_dir / "added_tokens.json").read_text()) == {
        "<mask>": 32000,
        "<pos>": 32001,
    }
    cfg = json.loads((released_dir / "config.json").read_text())
    assert cfg["model_type"] == "osprey" and "mm_hidden_size" not in cfg


def test_released_format_loads_strictly_and_bit_for_bit(tiny_parts, released_dir, voc):
    model, tok = tiny_parts
    loaded, ltok = load_osprey(released_dir, base_config=tiny_config())
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert ltok("<mask><pos>? Using").input_ids == tok("<mask><pos>? Using").input_ids
    a = Osprey(model, tok).logits(voc["rgb"], voc["masks"][:1], _prompt())
    b = Osprey(loaded, ltok).logits(voc["rgb"], voc["masks"][:1], _prompt())
    assert torch.equal(a, b)


def test_stage2_type_and_extra_vocab_rows(tiny_parts, tmp_path):
    model, tok = tiny_parts
    out = export_original(model, tok, tmp_path / "s2", model_type="osprey-stage2")
    loaded, _ = load_osprey(out, base_config=tiny_config())
    assert loaded.config.llm.vocab_size == 32000
    cfg = json.loads((out / "config.json").read_text())
    cfg["model_type"] = "llava"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not an Osprey checkpoint"):
        load_osprey(out, base_config=tiny_config())


def test_vocab_32002_checkpoints_load(tmp_path):
    cfg = tiny_config()
    cfg.llm.vocab_size = 32002  # SEAGULL-style: embeddings resized for <mask>/<pos>
    from osprey.model.checkpoint import build_model
    from osprey.model.tiny import build_tiny

    _, tok = build_tiny()
    model = build_model(cfg, seed=1)
    out = export_original(model, tok, tmp_path / "v32002")
    loaded, _ = load_osprey(out, base_config=tiny_config())
    assert loaded.llm.get_input_embeddings().weight.shape[0] == 32002


def _rewrite_shards(path, drop=None, add=None):
    index = json.loads((path / "pytorch_model.bin.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        state = torch.load(path / shard, weights_only=True)
        state = {k: v for k, v in state.items() if not (drop and drop(k))}
        if add and shard.startswith("pytorch_model-00001"):
            state.update(add)
        torch.save(state, path / shard)
    index["weight_map"] = {
        k: v for k, v in index["weight_map"].items() if not (drop and drop(k))
    } | {k: "pytorch_model-00001-of-00002.bin" for k in (add or {})}
    (path / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def test_strict_loading_lists_both_sides(tiny_parts, tmp_path):
    model, tok = tiny_parts
    out = export_original(model, tok, tmp_path / "bad")
    _rewrite_shards(
        out, drop=lambda k: k == "model.norm.weight", add={"model.extra.weight": torch.zeros(2)}
    )
    with pytest.raises(CheckpointError) as err:
        load_osprey(out, base_config=tiny_config())
    assert "missing 1 keys: llm.model.norm.weight" in str(err.value)
    assert "unexpected" in str(err.value) and "model.extra.weight" in str(err.value)


def test_separate_clip_file(tiny_parts, tmp_path, voc):
    """Checkpoints without the embedded tower take it from the open_clip file (visual.* keys; the
    text tower is ignored); when both are present they must agree."""
    model, tok = tiny_parts
    out = export_original(model, tok, tmp_path / "no_tower", dtype=torch.float32)
    _rewrite_shards(out, drop=lambda k: k.startswith("model.vision_tower."))
    clip = {
        "visual." + k[len("vision.visual.") :]: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("vision.")
    }
    clip |= {"text.token_embedding.weight": torch.zeros(3, 2), "logit_scale": torch.tensor(4.6)}
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="does not embed the CLIP vision tower"):
        load_osprey(out, base_config=tiny_config())
    loaded, ltok = load_osprey(
        out, base_config=tiny_config(), clip_path=tmp_path / "open_clip_pytorch_model.bin"
    )
    assert torch.equal(
        Osprey(loaded, ltok).logits(voc["rgb"], None, "<image>\nhi"),
        Osprey(model, tok).logits(voc["rgb"], None, "<image>\nhi"),
    )
    # Both present but different (e.g. layer-scale gammas left at init): refused.
    full = export_original(model, tok, tmp_path / "with_tower", dtype=torch.float32)
    gamma = next(k for k in clip if k.endswith(".gamma"))
    clip[gamma] = torch.full_like(clip[gamma], 1e-6)  # timm's init value
    torch.save(clip, tmp_path / "other_clip.bin")
    with pytest.raises(CheckpointError, match="disagree on 1 tensors"):
        load_osprey(full, base_config=tiny_config(), clip_path=tmp_path / "other_clip.bin")
    load_osprey(full, base_config=tiny_config(), clip_path=tmp_path / "open_clip_pytorch_model.bin")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_never_run(tmp_path):
    torch.save({"x": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        list(read_tensors([tmp_path / "pytorch_model.bin"]))


def test_our_format_round_trip(tiny_parts, tmp_path, voc):
    model, tok = tiny_parts
    out = save_osprey(model, tok, tmp_path / "ours")
    assert (out / "osprey_config.json").is_file() and (out / "model.safetensors").is_file()
    assert OspreyConfig.load(out / "osprey_config.json") == model.config
    loaded, ltok = load_osprey(out)
    assert loaded.config.untrained
    a = Osprey(model, tok).logits(
        voc["rgb"], voc["masks"][:2], "<image>\nregion1<mask><pos> region2<mask><pos>"
    )
    b = Osprey(loaded, ltok).logits(
        voc["rgb"], voc["masks"][:2], "<image>\nregion1<mask><pos> region2<mask><pos>"
    )
    assert torch.equal(a, b)
    # ours -> released -> ours keeps every tensor
    back, _ = load_osprey(
        export_original(loaded, ltok, tmp_path / "orig", dtype=torch.float32),
        base_config=tiny_config(),
    )
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_config_is_strict():
    data = tiny_config().to_dict()
    data["llm"]["rope_theta_typo"] = 1.0
    with pytest.raises(ValueError, match="unknown llm fields"):
        OspreyConfig.from_dict(data)


@pytest.mark.weights
@pytest.mark.parametrize("name", ["osprey-7b", "osprey-chat-7b"])
def test_real_checkpoint_loads(name, voc):
    from osprey.inference.hub import DEFAULT_CHECKPOINTS

    path = DEFAULT_CHECKPOINTS / name
    if not (path / "config.json").is_file():
        pytest.skip(f"{path} not downloaded (python -m osprey download {name})")
    osp = Osprey.from_pretrained(
        path, download=False, dtype="bf16" if torch.cuda.is_available() else "fp32"
    )
    answer = osp.describe(voc["rgb"], voc["masks"][:1], "category")[0]
    assert (
        answer.strip()
        and np.isfinite(osp.logits(voc["rgb"], voc["masks"][:1], _prompt()).numpy()).all()
    )


@pytest.mark.parametrize("extra", [[], ["--quantize", "8bit"]], ids=["full-precision", "8bit"])
def test_describe_cli(tmp_path, extra):
    if extra:
        pytest.importorskip("bitsandbytes")
    from PIL import Image

    image = Image.open(REPO / "examples" / "coffee.jpg")
    mask = np.zeros((image.height, image.width), np.uint8)
    mask[40:200, 60:300] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    cmd = [sys.executable, "-m", "osprey", "describe", "--model", "tiny-random"]
    cmd += ["--image", str(REPO / "examples" / "coffee.jpg"), "--mask", str(tmp_path / "m.png")]
    cmd += ["--task", "category", "--max-new-tokens", "4", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "meaningless" in out.stderr
