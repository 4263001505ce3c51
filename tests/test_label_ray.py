"""``python -m osprey.label --ray``: the same output as in-process, and a dying actor's images are
retried. One local Ray instance for the module, kept small (2 CPUs, an 80 MiB object store)."""

from __future__ import annotations

import json
import logging

import pytest

from osprey.core.errors import OspreyError
from osprey.label.cli import main
from osprey.label.inputs import list_images
from osprey.label.job import LabelSettings
from osprey.label.ray_backend import RayBackend
from osprey.label.runner import label_dataset
from tests.support.label import TINY_FLAGS, dying_actor, photo_folder, tiny_settings

ray = pytest.importorskip("ray", reason="Ray (requirements-dev.txt) runs the --ray backend")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False,
             logging_level=logging.WARNING)  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, voc):
    return photo_folder(tmp_path_factory.mktemp("photos"), voc["rgb"])


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, photos):
    """The output of the in-process run."""
    out = tmp_path_factory.mktemp("local") / "labels.json"
    assert main([str(photos), "--out", str(out), *TINY_FLAGS]) == 0
    return json.loads(out.read_text())


def test_ray_output_equals_in_process_output(local_ray, photos, in_process, tmp_path):
    out = tmp_path / "labels.json"
    assert main([str(photos), "--out", str(out), *TINY_FLAGS, "--ray", "--actors", "2"]) == 0
    assert ray.is_initialized()  # the test's instance was used, and left running
    assert json.loads(out.read_text()) == in_process
    assert len(in_process["annotations"]) == 9 and len(in_process["skipped"]) == 2


def test_an_actor_that_dies_has_its_images_retried(local_ray, photos, in_process, tmp_path):
    marker = tmp_path / "died"
    settings = tiny_settings(batching="on")  # the actors' engines; the in-process run has none
    backend = RayBackend(settings, actors=2, actor_cls=dying_actor(marker, "img2.png"))
    out = tmp_path / "labels.json"
    summary = label_dataset(list_images(photos), settings, out, backend, progress=False)
    assert marker.exists()  # an actor did die on img2.png
    data = json.loads(out.read_text())
    assert data == in_process  # complete, and no annotation twice
    assert summary.images == 3 and summary.regions == 9


def test_models_that_cannot_load_stop_the_run_with_one_message(local_ray, photos, tmp_path):
    settings = LabelSettings(model="osprey-7b", offline=True, checkpoints=str(tmp_path))
    backend = RayBackend(settings, actors=1)
    with pytest.raises(
        OspreyError, match=r"a Ray actor could not load the models: SAM sam2\.1-tiny is not in "
    ):  # the SAM `auto` picks on a CPU worker, offline
        label_dataset(list_images(photos), settings, tmp_path / "out.json", backend, progress=False)
    assert not (tmp_path / "out.json").exists()
