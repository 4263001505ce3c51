"""Multi-process training through ``torchrun`` exactly as on a cluster, here as 2 CPU processes
(DDP over gloo): the entry point runs unchanged, each rank gets its share of the data, the data
events of all ranks are summed, a batch that leaves the projector and extractor idle (text-only)
does not break DDP's gradient reduction, and rank 0 writes one loadable checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from osprey.model.checkpoint import load_osprey
from tests.support.data import write_tree as write_data_tree
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_ddp_two_processes(tmp_path, voc):
    specs = write_data_tree(voc, tmp_path)
    names = ["osprey_conversation", "vcr", "llava_mix", "refcoco"]  # llava_mix has a text-only one
    config = {
        "stage": 3,
        "model_path": "tiny-random",
        "datasets": [specs[n] for n in names],
        "data_root": str(tmp_path),
        "output_dir": str(tmp_path / "out"),
        "max_steps": 3,
        "save_steps": 2,
        "learning_rate": 1e-3,
        "bf16": False,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "gradient_checkpointing": True,
        "per_device_train_batch_size": 2,
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += [
        f"--master_port={free_port()}",
        "-m",
        "osprey.train",
        "--config",
        str(tmp_path / "c.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    out = tmp_path / "out"
    report = json.loads((out / "data_report.json").read_text())
    samples = sum(n for k, n in report["events"].items() if k.endswith("/samples"))
    assert samples == 2 * 3 * 2  # two ranks x three steps x batch 2, summed over the ranks
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    # save_total_limit=1: the step-2 checkpoint gave way to the final one, with both ranks' RNG
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-3"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {
        p.name for p in (out / "checkpoint-3").iterdir()
    }
    model, _ = load_osprey(out)
    from osprey.model.tiny import build_tiny

    start = build_tiny(seed=42)[0]  # the run's seed builds the same tiny-random model
    for (name, a), b in zip(start.vision.state_dict().items(), model.vision.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(start.llm.lm_head.weight, model.llm.lm_head.weight)
