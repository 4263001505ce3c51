"""The shared evaluation machinery: answer clean-up, seeds, the resumable store, the query loop."""

import json

import numpy as np
import pytest

from osprey.eval.common import (
    PAPER,
    DataError,
    GenerationConfig,
    ImageTask,
    PredictionStore,
    Query,
    after_colon,
    collect,
    markdown_table,
    read_records,
    resolve_image,
    run_queries,
    strip_answer,
)
from tests.support.fake_region_model import FakeRegionModel


def test_strip_answer_and_after_colon_follow_the_reference():
    assert strip_answer("  a cat </s> ") == "a cat"
    assert strip_answer("a cat</s>") == "a cat"
    assert after_colon("region1: a cat") == " a cat"
    # the reference keeps only the segment between the first and the second colon
    assert after_colon("a: b: c") == " b"
    assert after_colon("no colon") == "no colon"


def test_generation_config_greedy_and_paper_seeds():
    greedy = GenerationConfig()
    assert greedy.kwargs("q1") == {
        "max_new_tokens": 1024,
        "do_sample": False,
        "temperature": 0.2,
        "top_p": 0.6,
        "seed": None,
    }
    paper = GenerationConfig.paper(seed=7)
    a, b = paper.kwargs("q1"), paper.kwargs("q2")
    assert a["do_sample"] and a["temperature"] == 0.2 and a["top_p"] == 0.6
    assert a["seed"] != b["seed"]
    assert a == GenerationConfig.paper(seed=7).kwargs("q1")  # stable across runs
    assert a["seed"] != GenerationConfig.paper(seed=8).kwargs("q1")["seed"]


def test_resolve_image_tries_coco_and_city_layouts(tmp_path):
    (tmp_path / "000000000139.jpg").write_bytes(b"x")
    (tmp_path / "aachen").mkdir()
    (tmp_path / "aachen" / "aachen_000000_000019_leftImg8bit.png").write_bytes(b"x")
    assert resolve_image(tmp_path, "COCO_val2014_000000000139.jpg").name == "000000000139.jpg"
    city = resolve_image(tmp_path, "aachen_000000_000019_leftImg8bit.png")
    assert city.parent.name == "aachen" and city.is_file()
    assert resolve_image(tmp_path, "missing.jpg") == tmp_path / "missing.jpg"


def test_store_drops_a_torn_last_line_and_resumes(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "answer": "x"}) + "\n" + '{"id": "b", "ans')
    assert set(read_records(path)) == {"a"}
    with PredictionStore(path) as store:
        assert "a" in store and "b" not in store
        store.add({"id": "b", "answer": "y"})
    lines = path.read_text().splitlines()
    assert [json.loads(s)["id"] for s in lines] == ["a", "b"]


def _tasks(voc, image_path, n_images=2):
    masks = voc["masks"]
    return [
        ImageTask(
            image_path,
            [
                Query(
                    f"{i}:{k}",
                    "<image>\nWhat is <mask><pos>?",
                    lambda im, k=k: [masks[k]],
                    {"k": k},
                )
                for k in range(4)
            ],
        )
        for i in range(n_images)
    ]


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_and_asks_only_the_rest(voc, tmp_path):
    from PIL import Image

    image_path = tmp_path / "voc.jpg"
    Image.fromarray(voc["rgb"]).save(image_path)
    names = [voc["class_names"][i] for i in voc["labels"]]
    tasks = _tasks(voc, image_path)
    store_path = tmp_path / "preds.jsonl"

    model = FakeRegionModel(voc["masks"], names)
    original = model.generate

    def dies_after_three(*args, **kwargs):
        if len(model.calls) == 3:
            raise _Interrupt
        return original(*args, **kwargs)

    model.generate = dies_after_three
    with pytest.raises(_Interrupt), PredictionStore(store_path) as store:
        run_queries(model, tasks, store, GenerationConfig())
    assert len(read_records(store_path)) == 3

    fresh = FakeRegionModel(voc["masks"], names)
    with PredictionStore(store_path) as store:
        asked = run_queries(fresh, tasks, store, GenerationConfig())
        records = store.records
    assert asked == 5 and len(fresh.calls) == 5
    assert [r["id"] for r in collect(tasks, records)] == [q.id for t in tasks for q in t.queries]
    assert records["1:0"]["answer"] == names[0] and records["1:0"]["k"] == 0

    again = FakeRegionModel(voc["masks"], names)
    with PredictionStore(store_path) as store:
        assert run_queries(again, tasks, store, GenerationConfig()) == 0
    assert again.calls == []


def test_image_is_read_once_per_task(voc, tmp_path, monkeypatch):
    from PIL import Image

    import osprey.core.images

    image_path = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(image_path)
    reads = []
    real = osprey.core.images.load_image
    monkeypatch.setattr(osprey.core.images, "load_image", lambda p: reads.append(p) or real(p))
    model = FakeRegionModel(voc["masks"], ["x"] * len(voc["masks"]))
    with PredictionStore(tmp_path / "p.jsonl") as store:
        run_queries(model, _tasks(voc, image_path, n_images=2), store, GenerationConfig())
    assert len(model.calls) == 8 and len(reads) == 2


def test_mask_that_does_not_fit_the_image_is_an_error(voc, tmp_path):
    from PIL import Image

    image_path = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(image_path)
    bad = [ImageTask(image_path, [Query("q", "<mask><pos>", lambda im: [np.zeros((5, 5), bool)])])]
    with (
        PredictionStore(tmp_path / "p.jsonl") as store,
        pytest.raises(DataError, match="does not fit"),
    ):
        run_queries(FakeRegionModel(voc["masks"], ["x"] * 19), bad, store, GenerationConfig())


def test_collect_reports_missing_predictions():
    tasks = [ImageTask("x.jpg", [Query("a", "", lambda im: []), Query("b", "", lambda im: [])])]
    with pytest.raises(DataError, match="1 queries have no prediction"):
        list(collect(tasks, {"a": {"id": "a"}}))


def test_markdown_table_puts_paper_numbers_beside_ours():
    text = markdown_table("lvis", {"SS": 61.234, "S-IoU": 30.0, "objects": 12}, ["a note"])
    assert "| SS | 61.23 | 65.24 | Osprey-7B | Table 3 |" in text
    assert "| S-IoU | 30.00 | 38.19 |" in text
    assert "| objects | 12 | – |" in text and "- a note" in text
    assert {p.metric for p in PAPER["pope"]} >= {"random/Acc", "adversarial/Yes%"}


def test_every_benchmark_has_arguments_a_runner_and_paper_numbers():
    from osprey.eval import cli

    assert set(cli.BENCHMARKS) == set(cli.BENCHMARK_ARGS) == set(cli.RUNNERS) == set(PAPER)


def test_importing_the_cli_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, osprey.eval.cli, osprey.eval.judge, osprey.eval.ovseg;"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'openai', 'pycocoevalcap')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
