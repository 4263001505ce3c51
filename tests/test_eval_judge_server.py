"""The description benchmark judged through a REAL OpenAI-compatible server on loopback
(llama.cpp serving SmolLM2-135M-Instruct), end to end through the CLI's own judge loader."""

import json
import time

import numpy as np
import pytest

from osprey.eval import cli
from osprey.eval.judge import parse_scores
from tests.support.eval_data import description_dataset, eval_argv
from tests.support.fake_region_model import FakeRegionModel
from tests.support.llama_server import llama_server_url  # noqa: F401  (fixture)


@pytest.mark.slow
def test_description_with_a_real_judge_server(llama_server_url, tmp_path, voc_objects):  # noqa: F811
    rgb, masks, names = voc_objects
    data, images = description_dataset(tmp_path, rgb, masks)
    out = tmp_path / "run"
    argv = eval_argv(
        "description",
        data_dir=data,
        images=images,
        out=out,
        model="fake",
        judge_base_url=llama_server_url,
        judge_model="smollm2",
        judge_api_key="local",
        judge_max_tokens="48",
        judge_seed="0",
        judge_attempts="2",
        judge_concurrency="2",
    )
    model = FakeRegionModel(masks, names)
    t0 = time.monotonic()
    assert cli.main(argv, model_loader=lambda args: model) == 0
    reviews = [json.loads(s) for s in (out / "reviews.jsonl").read_text().splitlines()]
    assert sorted(r["question_id"] for r in reviews) == [0, 1]
    for r in reviews:
        assert r["reply"].strip(), "the server returned text"
        parsed = parse_scores(r["reply"])  # the stored verdict is the parser's on the stored reply
        assert (r["scores"] is None) == (parsed.scores is None) and r["parse"] == parsed.method
        assert 1 <= r["attempts"] <= 2
    metrics = json.loads((out / "metrics.json").read_text())
    readable = [r for r in reviews if r["scores"] is not None]
    assert metrics["score judged"] == 2 and metrics["score unreadable"] == 2 - len(readable)
    if readable and np.mean([r["scores"][0] for r in readable]) > 0:
        ratio = np.mean([r["scores"][1] for r in readable]) / np.mean(
            [r["scores"][0] for r in readable]
        )
        assert metrics["score"] == pytest.approx(100 * ratio)
    print(
        f"real-server judge run: {time.monotonic() - t0:.1f} s; replies: {[r['reply'][:60] for r in reviews]}"
    )

    # everything is judged: a second run sends no request (an unreachable URL would fail)
    rerun = [
        *argv[: argv.index("--judge-base-url") + 1],
        "http://127.0.0.1:9/v1",
        *argv[argv.index("--judge-base-url") + 2 :],
    ]
    assert cli.main(rerun, model_loader=lambda args: model) == 0
