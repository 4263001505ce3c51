"""``python -m sam_bridge``: segment with --tiny, download, errors; import hygiene of the package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sam_bridge
from osprey.core.masks import decode_rle, load_mask_png
from sam_bridge.checkpoints import CHECKPOINTS
from sam_bridge.cli import TINY_WARNING, main

REPO = Path(__file__).resolve().parents[1]
CHELSEA = REPO / "examples" / "chelsea.jpg"  # 451 x 300


def test_segment_clicks_with_tiny_writes_masks_and_reports_them(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "segment",
            "--image",
            str(CHELSEA),
            "--point",
            "300,120",
            "--tiny",
            "--out",
            str(out),
            "--rle",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0
    assert "untrained, masks are meaningless" in captured.err and TINY_WARNING in captured.err
    lines = [line for line in captured.out.splitlines() if line.startswith("mask_")]
    assert len(lines) == 3 and all("score=" in s and "area=" in s and "box=" in s for s in lines)
    rows = json.loads((out / "masks.json").read_text())
    assert len(rows) == 3
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        mask = load_mask_png(out / row["file"])
        assert mask.shape == (300, 451)
        assert np.array_equal(decode_rle(row["rle"]), mask)
        assert row["area"] == int(mask.sum())


def test_segment_with_negative_points_and_a_box(tmp_path, capsys):
    args = ["segment", "--image", str(CHELSEA), "--point", "300,120,1", "--point", "50,50,0"]
    args += ["--box", "200,50,420,290", "--masks", "3", "--tiny", "--out", str(tmp_path)]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("mask_*.png")) == [
        "mask_0.png",
        "mask_1.png",
        "mask_2.png",
    ]


def test_segment_everything_with_tiny(tmp_path, capsys):
    args = ["segment", "--image", str(CHELSEA), "--everything", "--points-per-side", "3"]
    args += [
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
        "--tiny",
        "--out",
        str(tmp_path),
        "--rle",
    ]
    assert main(args) == 0
    rows = json.loads((tmp_path / "masks.json").read_text())
    areas = [r["area"] for r in rows]
    assert areas == sorted(areas, reverse=True)
    for row in rows:
        assert np.array_equal(load_mask_png(tmp_path / row["file"]), decode_rle(row["rle"]))
        assert "stability" in row


@pytest.mark.parametrize(
    ("extra", "rc", "message"),
    [
        (["--point", "451,10"], 1, "outside the 451x300 image"),
        (["--box", "10,10,10,90"], 1, "zero area"),
        ([], 2, "give --point, --box or --everything"),
    ],
)
def test_segment_errors_are_one_line_messages(tmp_path, capsys, extra, rc, message):
    assert (
        main(["segment", "--image", str(CHELSEA), "--tiny", "--out", str(tmp_path), *extra]) == rc
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_image_and_bad_point_syntax(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert (
        main(["segment", "--image", str(bad), "--point", "1,1", "--tiny", "--out", str(tmp_path)])
        == 1
    )
    assert "cannot read image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "segment",
                "--image",
                str(CHELSEA),
                "--point",
                "1,2,3,4",
                "--tiny",
                "--out",
                str(tmp_path),
            ]
        )
    with pytest.raises(SystemExit):
        main(
            [
                "segment",
                "--image",
                str(CHELSEA),
                "--point",
                "1,2,7",
                "--tiny",
                "--out",
                str(tmp_path),
            ]
        )


def test_missing_checkpoint_without_download_explains_where_to_put_it(tmp_path, capsys):
    args = [
        "segment",
        "--image",
        str(CHELSEA),
        "--point",
        "1,1",
        "--checkpoints-dir",
        str(tmp_path),
    ]
    args += ["--no-download", "--out", str(tmp_path / "o")]
    assert main([*args, "--model-type", "vit_b"]) == 1  # the older option keeps working
    err = capsys.readouterr().err
    assert CHECKPOINTS["vit_b"].url in err and str(tmp_path / "sam_vit_b_01ec64.pth") in err
    assert main([*args, "--sam", "sam2.1-small"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "https://huggingface.co/facebook/sam2.1-hiera-small" in err
    assert str(tmp_path / "sam2.1-hiera-small") in err
    assert main(args) == 1  # auto on this CPU: SAM 2.1 tiny, and says so
    err = capsys.readouterr().err
    assert "SAM auto: sam2.1-tiny" in err and "facebook/sam2.1-hiera-tiny" in err


def test_segment_with_the_tiny_sam2_covers_every_prompt_kind(tmp_path, capsys):
    base = ["segment", "--image", str(CHELSEA), "--tiny", "--sam", "sam2.1-tiny", "--rle"]
    assert main([*base, "--point", "300,120,1", "--out", str(tmp_path / "a")]) == 0
    assert len(json.loads((tmp_path / "a" / "masks.json").read_text())) == 3
    prompt = ["--point", "300,120", "--point", "50,50,0", "--box", "200,50,420,290"]
    assert main([*base, *prompt, "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "masks.json").read_text())
    assert len(rows) == 1 and load_mask_png(tmp_path / "b" / rows[0]["file"]).shape == (300, 451)
    everything = ["--everything", "--points-per-side", "2", "--pred-iou-thresh", "0"]
    assert (
        main([*base, *everything, "--stability-score-thresh", "0", "--out", str(tmp_path / "c")])
        == 0
    )
    assert json.loads((tmp_path / "c" / "masks.json").read_text())
    assert TINY_WARNING in capsys.readouterr().err


def test_an_unknown_sam_is_one_line(tmp_path, capsys):
    args = ["segment", "--image", str(CHELSEA), "--point", "1,1", "--out", str(tmp_path)]
    assert main([*args, "--sam", "sam3-huge"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown SAM 'sam3-huge'") and err.count("\n") == 1
    assert main([*args, "--sam", "vit_b", "--model-type", "vit_h"]) == 1
    assert "disagree" in capsys.readouterr().err


def test_download_of_a_sam2_folder_in_place_verifies_its_tensors(tmp_path, capsys):
    from tests.support.sam import video_checkpoint

    video_checkpoint(tmp_path / "someone--tiny-sam2")
    args = ["download", "--sam", "someone/tiny-sam2", "--checkpoints-dir", str(tmp_path)]
    assert main([*args, "--verify"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "someone--tiny-sam2")
    (tmp_path / "someone--tiny-sam2" / "config.json").write_text('{"model_type": "llama"}')
    assert main([*args, "--verify"]) == 1
    assert "not a SAM 2 checkpoint" in capsys.readouterr().err


def test_download_finds_a_file_already_in_place(tmp_path, capsys):
    spec = CHECKPOINTS["vit_b"]
    with open(tmp_path / spec.filename, "wb") as f:
        f.truncate(spec.size)  # sparse: the right size, the wrong bytes, no disk used
    assert main(["download", "--model-type", "vit_b", "--checkpoints-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / spec.filename)
    rc = main(["download", "--model-type", "vit_b", "--checkpoints-dir", str(tmp_path), "--verify"])
    assert rc == 1 and "SHA-256" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# import hygiene


def test_help_is_fast_and_imports_no_torch():
    code = "import sys, sam_bridge, sam_bridge.cli; print('torch' in sys.modules)"
    probe = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert probe.stdout.strip() == "False"
    helped = subprocess.run(
        [sys.executable, "-m", "sam_bridge", "segment", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert helped.returncode == 0 and "--point X,Y[,LABEL]" in helped.stdout


def test_public_names_resolve_lazily():
    assert sorted(sam_bridge.__all__) == sorted(sam_bridge._EXPORTS)
    for name in sam_bridge.__all__:
        assert getattr(sam_bridge, name) is not None
    with pytest.raises(AttributeError):
        _ = sam_bridge.not_a_name


def test_sam_bridge_uses_only_the_base_layer_of_osprey():
    """sam_bridge knows nothing about the Osprey model: of osprey it imports the core layer only
    (errors, images, masks, lru, devices, options; see tests/support/layering.py)."""
    allowed = {
        f"osprey.core.{m}" for m in ("errors", "images", "masks", "lru", "devices", "options")
    }
    for path in (REPO / "sam_bridge").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            osprey = [n for n in names if n == "osprey" or n.startswith("osprey.")]
            assert set(osprey) <= allowed, (path, osprey)
