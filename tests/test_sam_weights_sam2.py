"""SAM 2.1 weights: the names a user may ask for, configs read with a family check, the strict
safetensors load (the Hub's video checkpoints included), and the Hub download (offline-aware,
verified against the Hub's digest, safetensors only). No network: the Hub is faked where a
download must succeed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Sam2VideoConfig

from sam_bridge import CheckpointError, SamBridge, SamBridgeError
from sam_bridge.names import CHOICES, family, is_hub_id, resolve_choice
from sam_bridge.sam2_build import (
    build_tiny_sam2,
    config_from_dict,
    read_config,
    sam2_config,
    size_of,
    tiny_sam2_config,
)
from sam_bridge.sam2_hub import FILES, ensure_sam2, folder_of
from tests.support.sam import video_checkpoint

PARTS = ("vision_config", "prompt_encoder_config", "mask_decoder_config")


# ---------------------------------------------------------------------------------------------
# names


def test_names_and_families():
    assert CHOICES[0] == "auto" and {"vit_b", "sam2.1-tiny", "sam2.1-large"} <= set(CHOICES)
    assert family("vit_h") == "sam1" and family("sam2.1-base-plus") == "sam2"
    assert family("someone/my-sam2") == "sam2" and is_hub_id("facebook/sam2.1-hiera-tiny")
    for bad in ("sam3", "../etc/passwd", "a/b/c", "/abs/path", "http://x/y"):
        assert not is_hub_id(bad)
        with pytest.raises(SamBridgeError, match="unknown SAM"):
            family(bad)


@pytest.mark.parametrize(
    ("sam", "model_type", "expected"),
    [
        (None, None, "auto"),
        ("sam2.1-small", None, "sam2.1-small"),
        (None, "vit_l", "vit_l"),  # --sam-model-type keeps working
        ("vit_h", "vit_h", "vit_h"),
        ("owner/sam2-finetune", None, "owner/sam2-finetune"),
    ],
)
def test_sam_option_resolution(sam, model_type, expected):
    assert resolve_choice(sam, model_type) == expected


@pytest.mark.parametrize(
    ("sam", "model_type", "message"),
    [
        ("sam3", None, r"unknown SAM 'sam3' \(--sam / OSPREY_SAM\)"),
        (None, "vit_x", "unknown SAM 'vit_x'"),
        ("vit_b", "sam2.1-tiny", "disagree"),
    ],
)
def test_bad_sam_options_are_one_clear_line(sam, model_type, message):
    with pytest.raises(SamBridgeError, match=message) as info:
        resolve_choice(sam, model_type)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# configs


def test_released_sizes_and_their_configs():
    for size in ("sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large"):
        assert size_of(sam2_config(size)) == size
    assert size_of(tiny_sam2_config()) is None
    assert sam2_config("sam2.1-large").vision_config.backbone_channel_list == [1152, 576, 288, 144]
    with pytest.raises(SamBridgeError, match=r"unknown SAM 2\.1 size"):
        sam2_config("sam2.1-huge")


def test_a_video_config_from_the_hub_gives_the_image_models_parts():
    video = Sam2VideoConfig(**{p: getattr(sam2_config("sam2.1-small"), p) for p in PARTS})
    config = config_from_dict(video.to_dict())
    assert config.model_type == "sam2" and size_of(config) == "sam2.1-small"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model_type": "sam"}, "SAM 1 in transformers' format"),
        ({"model_type": "llama", "hidden_size": 4096}, "model_type is 'llama'"),
        ({"model_type": "sam3_tracker"}, "not a SAM 2 checkpoint"),
        ([1, 2], "model_type is None"),
        (
            {"model_type": "sam2", "vision_config": {"backbone_config": {"hidden_size": "x"}}},
            "broken",
        ),
    ],
)
def test_configs_of_other_families_are_refused(data, message):
    with pytest.raises(CheckpointError, match=message):
        config_from_dict(data)


def test_a_config_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_config(tmp_path / "config.json")


# ---------------------------------------------------------------------------------------------
# strict loading


def test_a_hub_style_checkpoint_loads_strictly_and_reproduces_the_model(tmp_path, voc):
    folder = video_checkpoint(tmp_path / "ckpt", seed=5)
    loaded = SamBridge.from_pretrained("someone/tiny-sam2", checkpoint=folder, device="cpu")
    same = SamBridge(build_tiny_sam2(5), device="cpu")
    a = loaded.predict(voc["rgb"], points=[(250, 180)])
    b = same.predict(voc["rgb"], points=[(250, 180)])
    assert [c.score for c in a.candidates] == [c.score for c in b.candidates]
    assert np.array_equal(a.best.mask, b.best.mask)
    assert loaded.onnx_dir == folder and loaded.family.name == "sam2"
    # the safetensors file itself works too (its config.json beside it)
    assert SamBridge.from_pretrained("someone/x", checkpoint=folder / "model.safetensors")


def _drop(key: str):
    return lambda state: state.pop(key)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop("mask_decoder.iou_token.weight"), r"1 missing tensors \['mask_decoder.iou_token"),
        (lambda s: s.update(extra_head=torch.zeros(3)), r"1 unexpected \['extra_head'\]"),
        (lambda s: s.update({"mask_decoder.iou_token.weight": torch.zeros(1, 7)}), "1 mis-shaped"),
    ],
)
def test_missing_extra_or_misshaped_tensors_are_named(tmp_path, edit, message):
    folder = video_checkpoint(tmp_path / "ckpt", edit=edit)
    with pytest.raises(CheckpointError, match=message):
        SamBridge.from_pretrained("someone/tiny-sam2", checkpoint=folder)


def test_video_tensors_are_left_out_but_only_they(tmp_path):
    """The Hub's checkpoints hold the video model: its memory tensors are expected extras."""
    folder = video_checkpoint(tmp_path / "ckpt")
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert any(k.startswith("memory_attention.") for k in f.keys())  # noqa: SIM118
    SamBridge.from_pretrained("someone/tiny-sam2", checkpoint=folder)


def test_a_pickle_or_a_missing_file_is_refused(tmp_path):
    folder = video_checkpoint(tmp_path / "ckpt")
    torch.save({"x": torch.zeros(1)}, folder / "model.safetensors")  # a pickle under that name
    with pytest.raises(CheckpointError, match=r"cannot read .* as safetensors"):
        SamBridge.from_pretrained("someone/tiny-sam2", checkpoint=folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        SamBridge.from_pretrained("someone/tiny-sam2", checkpoint=folder)
    with pytest.raises(CheckpointError, match=r"not a \.safetensors file"):
        (tmp_path / "config.json").write_text("{}")
        (tmp_path / "w.pt").write_bytes(b"x")
        SamBridge.from_pretrained("someone/x", checkpoint=tmp_path / "w.pt")


def test_a_config_of_another_size_than_asked_is_refused(tmp_path):
    folder = video_checkpoint(tmp_path / "ckpt")  # the tiny random config: no released size
    with pytest.raises(CheckpointError, match=r"not sam2\.1-small"):
        SamBridge.from_pretrained("sam2.1-small", checkpoint=folder)


def test_a_sam1_checkpoint_for_a_sam2_name_and_back(tmp_path):
    from sam_bridge.build import build_tiny_sam

    pth = tmp_path / "sam.pth"
    torch.save(build_tiny_sam().state_dict(), pth)
    with pytest.raises(CheckpointError, match=r"not a \.safetensors file"):
        SamBridge.from_pretrained("sam2.1-tiny", checkpoint=pth)
    folder = video_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError):
        SamBridge.from_pretrained("vit_b", checkpoint=folder / "model.safetensors")


# ---------------------------------------------------------------------------------------------
# the Hub


def test_offline_says_what_to_fetch_and_where(tmp_path):
    with pytest.raises(CheckpointError) as info:  # HF_HUB_OFFLINE=1 (tests/conftest.py)
        ensure_sam2("sam2.1-tiny", tmp_path)
    message = str(info.value)
    assert "\n" not in message and "facebook/sam2.1-hiera-tiny" in message
    assert str(tmp_path / "sam2.1-hiera-tiny") in message and "model.safetensors" in message
    with pytest.raises(CheckpointError, match="is not in"):
        SamBridge.from_pretrained("sam2.1-large", checkpoints_dir=tmp_path, download=False)


def test_a_folder_in_place_is_used_without_the_network(tmp_path):
    folder = video_checkpoint(folder_of("someone/tiny-sam2", tmp_path))
    assert folder.name == "someone--tiny-sam2"
    assert ensure_sam2("someone/tiny-sam2", tmp_path, download=False) == folder
    bridge = SamBridge.from_pretrained("someone/tiny-sam2", checkpoints_dir=tmp_path)
    assert bridge.onnx_dir == folder


class FakeHub:
    """hf_hub_download / get_hf_file_metadata over a local folder (a repository's files)."""

    def __init__(self, monkeypatch, source: Path, digest: str | None = None):
        import huggingface_hub

        self.source, self.fetched = source, []
        data = (source / "model.safetensors").read_bytes()
        self.digest = digest or hashlib.sha256(data).hexdigest()
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)

    def download(self, repo, filename, local_dir, **kwargs):
        self.fetched.append((repo, filename))
        dest = Path(local_dir) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((self.source / filename).read_bytes())
        return str(dest)

    def metadata(self, url, **kwargs):
        return SimpleNamespace(etag=f'"{self.digest}"' if url.endswith(".safetensors") else "abc")


def test_a_download_is_verified_against_the_hubs_digest(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch, video_checkpoint(tmp_path / "repo"))
    folder = ensure_sam2("sam2.1-tiny", tmp_path / "ckpts", progress=False)
    assert hub.fetched == [("facebook/sam2.1-hiera-tiny", f) for f in FILES]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(FILES)
    bad = FakeHub(monkeypatch, tmp_path / "repo", digest="0" * 64)
    with pytest.raises(CheckpointError, match="does not match the Hub's SHA-256"):
        ensure_sam2("sam2.1-small", tmp_path / "ckpts", progress=False)
    assert not (folder_of("sam2.1-small", tmp_path / "ckpts") / "model.safetensors").exists()
    assert bad.fetched[-1][1] == "model.safetensors"


def test_a_hub_repository_that_is_not_a_sam2_is_refused_before_its_weights(tmp_path, monkeypatch):
    source = video_checkpoint(tmp_path / "repo")
    (source / "config.json").write_text(json.dumps({"model_type": "llama"}))
    hub = FakeHub(monkeypatch, source)
    with pytest.raises(CheckpointError, match="someone/llm is not a SAM 2 checkpoint"):
        ensure_sam2("someone/llm", tmp_path / "ckpts", progress=False)
    assert [f for _, f in hub.fetched] == ["config.json"]
