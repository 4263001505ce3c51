"""Several sessions on one app with continuous batching (`python app.py --tiny` as it starts):
their answers stream to API clients and equal what each would get alone, and every session's
export holds only its own image, regions and chat."""

import threading

import numpy as np
import pytest
from PIL import Image

from osprey.app.demo import build_demo
from osprey.app.main import parse_args
from osprey.app.service import RegionChat
from osprey.app.session import Session
from osprey.app.startup import build_service
from osprey.inference.facade import Osprey
from sam_bridge import SamBridge
from tests.support.servers import serving

QUESTION = "What is region1 doing here?"


@pytest.fixture(scope="module")
def batched_app():
    service = build_service(parse_args(["--tiny"]))
    assert service.osprey.generator.engine is not None  # the app batches by default
    service.stream_interval = 0.01  # the tiny model's whole answer takes about 0.1 s: see it stream
    with serving(build_demo(service)) as url:
        yield url, service
    service.osprey.generator.disable_batching()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, voc):
    d = tmp_path_factory.mktemp("photos")
    paths = []
    for i in range(4):
        rgb = np.ascontiguousarray(np.roll(voc["rgb"], 60 * i, axis=1)[: 300 + 10 * i])
        Image.fromarray(rgb).save(d / f"photo{i}.png")
        paths.append(d / f"photo{i}.png")
    return paths


def _alone(tiny_parts, photo) -> tuple[str, dict]:
    """What one session gets on a service of its own, without batching."""
    service = RegionChat(Osprey(*tiny_parts), SamBridge.tiny(), max_new_tokens=48)
    s = Session()
    service.open_image(s, str(photo))
    service.click(s, 120, 100)
    service.add_region(s)
    return list(service.ask(s, QUESTION))[-1].text, service.export(s)


def test_sessions_stream_together_and_keep_their_own_data(batched_app, photos, tiny_parts):
    from gradio_client import Client, handle_file

    url, _ = batched_app
    results: dict[int, tuple] = {}

    def session(i: int) -> None:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        client.predict(handle_file(str(photos[i])), api_name="/session_open")
        client.predict(120, 100, "positive", api_name="/session_click")
        client.predict(api_name="/session_add")
        job = client.submit(QUESTION, api_name="/session_ask")
        steps = list(job)
        results[i] = (steps, job.result(), client.predict(api_name="/session_export"))
        client.predict(api_name="/session_close")

    threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, photo in enumerate(photos):
        steps, answer, export = results[i]
        alone_answer, alone_export = _alone(tiny_parts, photo)
        assert len(steps) > 1 and answer == alone_answer  # streamed, and the same tokens
        assert export["image"] == alone_export["image"]  # its own photo (all sizes differ)
        assert [r["segmentation"] for r in export["regions"]] == [
            r["segmentation"] for r in alone_export["regions"]
        ]
        assert [c["question"] for c in export["chat"]] == [QUESTION]


def test_describe_streams_to_api_clients(batched_app, photos, voc, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = batched_app
    Image.fromarray(voc["masks"][0][:300].astype(np.uint8) * 255).save(tmp_path / "m.png")
    client = Client(url, verbose=False)
    job = client.submit(handle_file(str(photos[0])), [handle_file(str(tmp_path / "m.png"))], "",
                        QUESTION, 0, api_name="/describe")  # fmt: skip
    steps = list(job)
    assert len(steps) > 3 and all(steps[k + 1].startswith(steps[k]) for k in range(len(steps) - 2))
