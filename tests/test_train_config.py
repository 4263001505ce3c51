"""Training configuration, stage presets, the trainable sets of stages.py, LoRA wiring and the
clear errors of the scale-out paths that cannot run here (no GPU, DeepSpeed or bitsandbytes)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from osprey.train.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    load_config,
    parse_args,
    split_argv,
    with_overrides,
)
from osprey.train.stages import PARTS, StageError, apply_stage, summary, trainable_parts


@pytest.fixture
def tiny_model_copy(tiny_parts):
    """A private copy of the session's tiny model (tests here change requires_grad and wrap it)."""
    import copy

    return copy.deepcopy(tiny_parts[0])


# ---------------------------------------------------------------------------------------------
# config and command line


def test_overrides_are_typed_and_validated():
    cfg = parse_args(
        [
            "--config",
            "stage2",
            "--learning_rate=1e-4",
            "--bf16",
            "false",
            "--lora",
            "--max_steps",
            "7",
        ]
    )
    assert cfg.stage == 2 and cfg.learning_rate == 1e-4 and cfg.bf16 is False
    assert cfg.lora is True and cfg.max_steps == 7
    cfg = with_overrides(cfg, {"save_total_limit": "none", "datasets": '[{"type": "vg"}]'})
    assert cfg.save_total_limit is None and cfg.datasets == [{"type": "vg"}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "stage2", "--learnig_rate=1"], "did you mean learning_rate"),
        (["--config", "stage2", "--max_steps=1.5"], "expected an integer"),
        (["--config", "stage2", "--bf16=maybe"], "expected true/false"),
        (["--config", "stage9"], "no preset 'stage9'"),
        (["--learning_rate=1"], "--config is required"),
        (["--config", "stage2", "lr"], "unexpected argument"),
    ],
)
def test_bad_arguments_fail_clearly(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)


def test_split_argv_forms():
    assert split_argv(["--config=a", "--x=1", "--y", "2", "--flag"]) == (
        "a",
        {"x": "1", "y": "2", "flag": "true"},
    )


def test_unknown_keys_in_a_config_file_are_errors(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"stage": 3, "lerning_rate": 1.0}))
    with pytest.raises(ConfigError, match="lerning_rate"):
        load_config(path)


# the recipe of the paper / original scripts (reference §5.1)
RECIPE = {
    "stage1": dict(stage=1, learning_rate=1e-3, num_train_epochs=1, per_device_train_batch_size=32),
    "stage2": dict(stage=2, learning_rate=2e-5, num_train_epochs=2, per_device_train_batch_size=1),
    "stage3": dict(stage=3, learning_rate=1e-5, num_train_epochs=2, per_device_train_batch_size=1),
    "stage3_chat": dict(stage=3, learning_rate=1e-5, num_train_epochs=2),
}


@pytest.mark.parametrize("name", sorted(RECIPE))
def test_presets_follow_the_original_recipe(name):
    cfg = load_config(name)
    for key, value in RECIPE[name].items():
        assert getattr(cfg, key) == value, key
    assert (cfg.warmup_ratio, cfg.lr_scheduler_type, cfg.weight_decay) == (0.03, "cosine", 0.0)
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.model_max_length == 2048
    assert cfg.template == "vicuna_v1" and cfg.deepspeed == "zero2"


def test_preset_datasets_are_the_papers_mixtures():
    from osprey.data.registry import source_class

    types = {n: [source_class(d["type"]).name for d in load_config(n).datasets] for n in RECIPE}
    assert types["stage1"] == ["llava"]
    assert types["stage2"] == ["coco", "refcoco", "refcoco+", "pascal_part", "part_imagenet"]
    osprey = ["osprey_short_form", "osprey_lvis_posneg", "osprey_conversation"]
    osprey += ["osprey_detail_description", "osprey_part_level"]
    assert types["stage3"] == [*osprey, "vg", "vcr"]
    assert types["stage3_chat"] == [*types["stage3"], "llava"]
    detail = load_config("stage3").datasets[3]["ann_file"]
    assert detail.endswith("osprey_detail_description.json")  # the published name


def test_every_preset_is_a_valid_config():
    names = [p.stem for p in PRESETS.glob("*.json") if not p.stem.startswith("zero")]
    assert set(names) == {*RECIPE, "finetune_lora"}
    for name in names:
        assert isinstance(load_config(name), TrainConfig)


# ---------------------------------------------------------------------------------------------
# stages


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_apply_stage_sets_exactly_the_stage_parts(tiny_model_copy, stage):
    model = tiny_model_copy
    counts = apply_stage(model, stage)
    for part in PARTS:
        params = list(getattr(model, part).parameters())
        want = part in trainable_parts(stage)
        assert all(p.requires_grad == want for p in params), part
        assert counts[part] == (
            sum(p.numel() for p in params) if want else 0,
            sum(p.numel() for p in params),
        )
    assert counts["vision"][0] == 0


def test_unknown_stage_and_lora_outside_stage_3(tiny_model_copy):
    with pytest.raises(StageError, match="unknown stage"):
        apply_stage(tiny_model_copy, 4)
    with pytest.raises(StageError, match="keeps frozen"):
        apply_stage(tiny_model_copy, 2, lora=True)
    with pytest.raises(StageError, match="no LoRA parameters"):
        apply_stage(tiny_model_copy, 3, lora=True)


def test_lora_trains_adapters_projector_and_extractor_and_merges(tiny_model_copy):
    from osprey.train.lora import add_lora, has_lora, merge_lora

    model = tiny_model_copy.eval()
    ids = torch.randint(3, 1000, (1, 12))
    before = model(ids).logits
    add_lora(model, r=4, alpha=8, dropout=0.0)
    counts = apply_stage(model, 3, lora=True)
    llm = dict(model.llm.named_parameters())
    assert all(p.requires_grad == ("lora_" in n) for n, p in llm.items())
    assert counts["projector"][0] == counts["projector"][1] > 0
    assert counts["mask_extractor"][0] == counts["mask_extractor"][1] > 0
    assert 0 < counts["llm"][0] < counts["llm"][1] // 10
    with torch.no_grad():  # move the adapters off their zero init, then merge
        for name, p in llm.items():
            if "lora_B" in name:
                p.normal_(0, 0.1)
        adapted = model(ids).logits
        merge_lora(model)
        merged = model(ids).logits
    assert not has_lora(model) and not torch.allclose(adapted, before)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
    assert summary(model)["llm"][1] == sum(p.numel() for p in model.llm.parameters())


# ---------------------------------------------------------------------------------------------
# what cannot run here fails with a clear message


def _hide(monkeypatch, package: str) -> None:
    """Make ``package`` look uninstalled (whether or not this machine has it)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )


@pytest.mark.parametrize("preset", ["zero2", "zero3"])
def test_deepspeed_configs_are_valid_and_missing_deepspeed_is_explained(preset, monkeypatch):
    from osprey.train.engine import EngineError, resolve_deepspeed

    data = json.loads((PRESETS / f"{preset}.json").read_text())
    assert data["zero_optimization"]["stage"] == int(preset[-1])
    assert data["bf16"]["enabled"] == "auto" and data["train_micro_batch_size_per_gpu"] == "auto"
    _hide(monkeypatch, "deepspeed")
    with pytest.raises(EngineError, match="needs DeepSpeed, which is not installed"):
        resolve_deepspeed(preset)
    with pytest.raises(EngineError, match="not found"):
        resolve_deepspeed("zero9")


def test_qlora_needs_bitsandbytes_and_cuda(monkeypatch):
    from osprey.train.lora import LoraSetupError, check_quantization
    from osprey.train.train import main

    check_quantization(16)
    with pytest.raises(LoraSetupError, match="bits must be"):
        check_quantization(3)
    if importlib.util.find_spec("bitsandbytes") is not None and not torch.cuda.is_available():
        with pytest.raises(LoraSetupError, match="needs a CUDA device"):
            check_quantization(4)
    _hide(monkeypatch, "bitsandbytes")
    with pytest.raises(LoraSetupError, match="needs bitsandbytes, which is not installed"):
        check_quantization(4)
    assert main(["--config", "finetune_lora", "--bits=4"]) == 2
    assert main(["--config", "stage3", "--bits=4"]) == 2  # QLoRA without LoRA


def test_cli_errors_exit_2_with_a_message(capsys, tmp_path):
    from osprey.train.train import main

    assert main(["--config", "stage3", "--learnig_rate=1"]) == 2
    assert "did you mean learning_rate" in capsys.readouterr().err
    assert main(["--config", "stage1", "--lora"]) == 2
    assert "needs a stage that trains the LLM" in capsys.readouterr().err
    assert main(["--config", "stage3", "--deepspeed=none", f"--data_root={tmp_path}"]) == 2
    assert "osprey_short_form.json does not exist" in capsys.readouterr().err  # before any model
    assert main(["--help"]) == 0
    assert "--learning_rate=" in capsys.readouterr().out
