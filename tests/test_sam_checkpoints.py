"""Checkpoint registry, download (against a loopback HTTP server) and safe strict loading."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from osprey.core.errors import UsageError
from sam_bridge import SamBridge, SamBridgeError
from sam_bridge.build import (
    build_sam,
    build_tiny_sam,
    load_weights,
    resolve_autocast_dtype,
    resolve_device,
)
from sam_bridge.checkpoints import (
    CHECKPOINTS,
    DEFAULT_CHECKPOINTS_DIR,
    CheckpointSpec,
    checkpoint_path,
    download_checkpoint,
    ensure_checkpoint,
    verify_checkpoint,
)
from sam_bridge.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# a loopback file server


class Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep the test output clean
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """A 300 kB file of random bytes served over HTTP, and a spec that describes it."""
    root = tmp_path / "www"
    root.mkdir()
    payload = os.urandom(300_000)
    (root / "fake_sam.pth").write_bytes(payload)
    server = Server(root)
    spec = CheckpointSpec(
        "fake",
        "fake_sam.pth",
        server.url("fake_sam.pth"),
        len(payload),
        hashlib.sha256(payload).hexdigest(),
    )
    yield server, spec, payload
    server.close()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket closes


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_holds_the_official_files():
    assert set(CHECKPOINTS) == {"vit_b", "vit_l", "vit_h"}
    for model_type, spec in CHECKPOINTS.items():
        assert spec.model_type == model_type
        assert spec.filename.startswith(f"sam_{model_type}_") and spec.filename.endswith(".pth")
        assert spec.url == "https://dl.fbaipublicfiles.com/segment_anything/" + spec.filename
        assert spec.sha256 is None or (len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0)
    sizes = [CHECKPOINTS[m].size for m in ("vit_b", "vit_l", "vit_h")]
    assert sizes == sorted(sizes) and sizes[0] > 3e8 and sizes[2] < 3e9


def test_default_folder_is_the_repository_checkpoints_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_CHECKPOINTS_DIR == REPO / "checkpoints"
    assert checkpoint_path("vit_b") == REPO / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert checkpoint_path("vit_h", tmp_path) == tmp_path / "sam_vit_h_4b8939.pth"
    with pytest.raises(CheckpointError, match="unknown SAM model type"):
        checkpoint_path("vit_x")


# ---------------------------------------------------------------------------------------------
# download


def test_download_verifies_then_renames_atomically_with_progress(
    served, tmp_path, monkeypatch, capsys
):
    _server, spec, payload = served
    dest_dir = tmp_path / "ckpt"
    renames = []
    real_replace = os.replace

    def replace(src, dst):
        # at the moment of the rename the target does not exist yet and the bytes are complete
        renames.append(
            (Path(src), Path(dst), Path(dst).exists(), Path(src).read_bytes() == payload)
        )
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = download_checkpoint(spec, dest_dir, progress=True)
    assert path == dest_dir / "fake_sam.pth" and path.read_bytes() == payload
    [(src, dst, existed, complete)] = renames
    assert src.parent == dst.parent == dest_dir and src != dst
    assert not existed and complete
    assert leftovers(dest_dir) == []
    err = capsys.readouterr().err
    assert "fake_sam.pth" in err and "100%" in err


def test_a_present_file_is_never_downloaded_again(served, tmp_path):
    server, spec, payload = served
    registry = {"fake": spec}
    first = ensure_checkpoint("fake", tmp_path, progress=False, registry=registry)
    assert len(server.requests) == 1
    server.close()  # the network is gone: the file must come from disk
    again = ensure_checkpoint("fake", tmp_path, progress=False, registry=registry)
    assert again == first and again.read_bytes() == payload
    assert len(server.requests) == 1


@pytest.mark.parametrize("field", ["size", "sha256"])
def test_mismatched_download_is_rejected_and_leaves_nothing(served, tmp_path, field):
    _server, spec, _ = served
    wrong = {"size": spec.size + 1} if field == "size" else {"sha256": "0" * 64}
    bad = CheckpointSpec(**{**spec.__dict__, **wrong})
    with pytest.raises(CheckpointError, match="expected"):
        download_checkpoint(bad, tmp_path, progress=False)
    assert not (tmp_path / spec.filename).exists() and leftovers(tmp_path) == []


def test_size_only_check_when_the_hash_is_unknown(served, tmp_path):
    _server, spec, payload = served
    no_hash = CheckpointSpec(**{**spec.__dict__, "sha256": None})
    assert download_checkpoint(no_hash, tmp_path, progress=False).read_bytes() == payload


def test_offline_gives_one_clear_message(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/sam_vit_b_01ec64.pth"
    spec = CheckpointSpec("vit_b", "sam_vit_b_01ec64.pth", url, 10, None)
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint("vit_b", tmp_path, progress=False, registry={"vit_b": spec})
    message = str(info.value)
    dest = tmp_path / "sam_vit_b_01ec64.pth"
    assert url in message and str(dest) in message
    assert f"curl -L -o {dest} {url}" in message
    assert (
        f"python -m sam_bridge download --model-type vit_b --checkpoints-dir {tmp_path}" in message
    )
    assert not dest.exists() and leftovers(tmp_path) == []


def test_http_errors_are_checkpoint_errors(served, tmp_path):
    server, spec, _ = served
    missing = CheckpointSpec(**{**spec.__dict__, "url": server.url("nothing-here.pth")})
    with pytest.raises(CheckpointError, match="404"):
        download_checkpoint(missing, tmp_path, progress=False)


def test_an_unwritable_folder_is_a_checkpoint_error(served, tmp_path):
    _server, spec, _ = served
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write"):
        download_checkpoint(spec, blocker / "ckpt", progress=False)


def test_no_download_when_not_allowed(tmp_path):
    with pytest.raises(CheckpointError, match=r"dl\.fbaipublicfiles\.com") as info:
        ensure_checkpoint("vit_b", tmp_path, download=False)
    assert str(tmp_path / "sam_vit_b_01ec64.pth") in str(info.value)


def test_a_truncated_file_in_place_is_reported_not_replaced(served, tmp_path):
    server, spec, payload = served
    (tmp_path / spec.filename).write_bytes(payload[:1000])
    with pytest.raises(CheckpointError, match="Delete it"):
        ensure_checkpoint("fake", tmp_path, registry={"fake": spec})
    assert server.requests == [] and (tmp_path / spec.filename).stat().st_size == 1000


def test_verify_checkpoint_hashes_the_whole_file(served, tmp_path):
    _server, spec, payload = served
    path = tmp_path / spec.filename
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))  # same size, one bit flipped
    verify_checkpoint(path, spec, full=False)  # the size alone looks fine
    with pytest.raises(CheckpointError, match="SHA-256"):
        verify_checkpoint(path, spec, full=True)


# ---------------------------------------------------------------------------------------------
# loading


def test_weights_load_strictly_and_reproduce_the_model(tmp_path, voc):
    source = build_tiny_sam(seed=1)
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    target = load_weights(build_tiny_sam(seed=2), path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, target.state_dict()[name]), name
    a = SamBridge(source, device="cpu").predict(voc["rgb"], points=[(100, 100)])
    b = SamBridge(target, device="cpu").predict(voc["rgb"], points=[(100, 100)])
    assert np.array_equal(a.best.mask, b.best.mask)


def test_mismatched_state_dicts_are_explained(tmp_path):
    state = build_tiny_sam().state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        CheckpointError, match=r"1 missing keys.*iou_token.*1 unexpected keys.*extra"
    ):
        load_weights(build_tiny_sam(), path, "tiny")
    wider = build_tiny_sam(width=64).state_dict()
    torch.save(wider, path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_weights(build_tiny_sam(width=32), path, "tiny")


class NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    """weights_only loading: a checkpoint that would run code on unpickling is rejected."""
    path = tmp_path / "evil.pth"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights(build_tiny_sam(), path)


def test_from_pretrained_reports_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        SamBridge.from_pretrained("vit_b", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="curl"):
        SamBridge.from_pretrained("vit_b", checkpoints_dir=tmp_path, download=False)
    with pytest.raises(SamBridgeError, match="unknown SAM model type"):
        build_sam("vit_x")


# ---------------------------------------------------------------------------------------------
# device and precision


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_autocast_dtype(None, cpu) is None
    assert resolve_autocast_dtype("auto", cpu) is None
    assert resolve_autocast_dtype("float32", cpu) is None
    assert resolve_autocast_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_autocast_dtype(torch.bfloat16, cpu) == torch.bfloat16
    with pytest.raises(SamBridgeError, match="not supported on cpu"):
        resolve_autocast_dtype("float16", cpu)
    with pytest.raises(SamBridgeError, match="not supported on mps"):
        resolve_autocast_dtype("bfloat16", torch.device("mps"))
    with pytest.raises(SamBridgeError, match="unsupported dtype"):
        resolve_autocast_dtype("int8", cpu)


def test_device_choice():
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto.type == "cpu"
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
