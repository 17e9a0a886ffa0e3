"""The CLI on folders: annotated images, one JSON, bad files reported by name, inputs untouched."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from facepose.cli import main

from .conftest import PHOTOS, REPO, needs_photos


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS / "nasa_iss_expedition_1.jpg", src / "crew.jpg")
    shutil.copy(PHOTOS / "skimage_camera_cameraman.png", src / "sub" / "camera.png")
    (src / "broken.jpg").write_bytes((PHOTOS / "matplotlib_grace_hopper.jpg").read_bytes()[:2000])
    (src / "readme.txt").write_text("hello")
    return src


@needs_photos
def test_folder_with_broken_and_text_files(folder, tmp_path, capsys):
    before = {p: digest(p) for p in folder.rglob("*") if p.is_file()}
    dest = tmp_path / "out"
    code = main(["detect", str(folder), str(dest), "--recursive"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "readme.txt" in err and "crew.jpg" not in err
    report = json.loads((dest / "detections.json").read_text())
    by_file = {r["file"]: r for r in report["images"]}
    assert set(by_file) == {"crew.jpg", "sub/camera.png"}
    assert len(by_file["crew.jpg"]["faces"]) == 3 and len(by_file["sub/camera.png"]["faces"]) == 1
    assert set(by_file["crew.jpg"]["faces"][0]) == {"box", "score", "landmarks", "rotation", "yaw", "pitch", "roll"}
    assert {e["file"] for e in report["errors"]} == {"broken.jpg", "readme.txt"}
    assert (dest / "crew.jpg").is_file() and (dest / "sub" / "camera.png").is_file()
    assert {p: digest(p) for p in folder.rglob("*") if p.is_file()} == before


@needs_photos
def test_dest_inside_src_never_touches_inputs(folder):
    before = {p: digest(p) for p in folder.rglob("*") if p.is_file()}
    dest = folder / "annotated"
    assert main(["detect", str(folder), str(dest), "-r"]) == 1
    assert main(["detect", str(folder), str(dest), "-r"]) == 2  # results exist: refused without --overwrite
    assert main(["detect", str(folder), str(dest), "-r", "--overwrite"]) == 1
    assert not (dest / "annotated").exists()  # DEST is not scanned as input
    for path, value in before.items():
        assert digest(path) == value


@needs_photos
def test_dest_equal_to_src_or_to_input_is_refused(folder, tmp_path, capsys):
    assert main(["detect", str(folder), str(folder)]) == 2
    assert "DEST must differ from SRC" in capsys.readouterr().err
    assert main(["detect", str(folder / "crew.jpg"), str(folder)]) == 2
    assert "overwrite an input" in capsys.readouterr().err


def test_missing_src_and_weights(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["detect", str(tmp_path / "a.png"), str(tmp_path / "o"), "--weights", str(tmp_path / "w.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err


@needs_photos
def test_thesis_entry_point(tmp_path):
    src = tmp_path / "one.jpg"
    shutil.copy(PHOTOS / "matplotlib_grace_hopper.jpg", src)
    done = subprocess.run([sys.executable, str(REPO / "detect.py"), str(src), str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [len(r["faces"]) for r in report["images"]] == [1]
    help_text = subprocess.run([sys.executable, str(REPO / "detect.py"), "--help"], capture_output=True, text=True).stdout
    assert "--face_pose_net" in help_text and "--cuda" in help_text
