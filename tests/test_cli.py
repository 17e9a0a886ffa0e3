"""The CLI on folders: annotated images, one JSON, bad files reported by name, inputs untouched."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
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


def results(dest) -> list[dict]:
    return [json.loads(line) for line in (dest / "detections.jsonl").read_text().splitlines()]


@needs_photos
@pytest.mark.parametrize("workers", [1, 2])
def test_folder_with_broken_and_text_files(folder, tmp_path, capsys, workers):
    before = {p: digest(p) for p in folder.rglob("*") if p.is_file()}
    dest = tmp_path / "out"
    code = main(["detect", str(folder), str(dest), "--recursive", "--workers", str(workers)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "4 faces in 2 images" in out and "2 files could not be read" in err
    assert "broken.jpg" in err and "readme.txt" in err and "crew.jpg" not in err
    by_image = {r["image"]: r for r in results(dest)}
    assert len(by_image) == 4  # one line per input, errors included
    assert len(by_image["crew.jpg"]["faces"]) == 3 and len(by_image["sub/camera.png"]["faces"]) == 1
    assert (by_image["crew.jpg"]["width"], by_image["crew.jpg"]["height"]) == (640, 437)
    assert set(by_image["crew.jpg"]["faces"][0]) == {"box", "score", "landmarks", "rotation", "yaw", "pitch", "roll"}
    assert {k for k, r in by_image.items() if "error" in r} == {"broken.jpg", "readme.txt"}
    assert (dest / "crew.jpg").is_file() and (dest / "sub" / "camera.png").is_file()
    assert {p: digest(p) for p in folder.rglob("*") if p.is_file()} == before


@needs_photos
def test_dest_inside_src_never_touches_inputs(folder):
    before = {p: digest(p) for p in folder.rglob("*") if p.is_file()}
    dest = folder / "annotated"
    assert main(["detect", str(folder), str(dest), "-r"]) == 1
    assert main(["detect", str(folder), str(dest), "-r"]) == 1  # a rerun finds everything done, errors still listed
    assert len(results(dest)) == 4
    assert main(["detect", str(folder), str(dest), "-r", "--min-face-size", "40"]) == 2  # other settings: refused
    assert main(["detect", str(folder), str(dest), "-r", "--overwrite", "--min-face-size", "40"]) == 1
    assert len(results(dest)) == 4
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


@pytest.mark.slow  # subprocesses
@needs_photos
def test_thesis_entry_point(tmp_path):
    src = tmp_path / "one.jpg"
    shutil.copy(PHOTOS / "matplotlib_grace_hopper.jpg", src)
    done = subprocess.run([sys.executable, str(REPO / "detect.py"), str(src), str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [len(r["faces"]) for r in results(tmp_path / "out")] == [1]
    help_text = subprocess.run([sys.executable, str(REPO / "detect.py"), "--help"], capture_output=True, text=True).stdout
    assert "--face_pose_net" in help_text and "--cuda" in help_text


@needs_photos
def test_existing_files_in_dest_are_not_replaced_without_overwrite(folder, tmp_path, capsys):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "crew.jpg").write_bytes(b"the user's own file")
    assert main(["detect", str(folder), str(dest)]) == 2
    assert "crew.jpg already exists" in capsys.readouterr().err
    assert (dest / "crew.jpg").read_bytes() == b"the user's own file"


@needs_photos
def test_half_written_last_line_is_recovered(folder, tmp_path):
    """A run killed while writing a line leaves it without a newline: the rerun drops it and redoes that
    image, so every image is in the file exactly once."""
    dest = tmp_path / "out"
    assert main(["detect", str(folder), str(dest), "-r", "--workers", "1"]) == 1
    lines = (dest / "detections.jsonl").read_text().splitlines()
    (dest / "detections.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])
    (dest / ".crew.jpg.1234.facepose-tmp").write_bytes(b"half an image")  # a killed run's unfinished copy
    assert main(["detect", str(folder), str(dest), "-r", "--workers", "1"]) == 1
    again = results(dest)
    assert sorted(r["image"] for r in again) == sorted(json.loads(line)["image"] for line in lines)
    assert again[:2] == [json.loads(line) for line in lines[:2]]
    assert not list(dest.glob(".*facepose-tmp"))


@pytest.mark.slow  # subprocesses
@needs_photos
def test_killed_run_continues_where_it_stopped(tmp_path):
    """kill -9 in the middle of a 2-worker run, then the same command: each image exactly once, and the
    same faces as a run that was never interrupted."""
    import os
    import signal
    import time

    src = tmp_path / "src"
    src.mkdir()
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:12]
    for p in photos:
        shutil.copy(p, src / p.name)
    command = [sys.executable, "-m", "facepose.cli", "detect", str(src), str(tmp_path / "out"), "--workers", "2"]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jsonl = tmp_path / "out" / "detections.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not jsonl.is_file() or jsonl.read_text().count("\n") < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = jsonl.read_text().count("\n")
    assert 3 <= partial < len(photos), partial
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"({partial} done by an earlier run)" in done.stdout
    resumed = results(tmp_path / "out")
    assert sorted(r["image"] for r in resumed) == sorted(p.name for p in photos)  # each exactly once
    assert main(["detect", str(src), str(tmp_path / "fresh"), "--workers", "1", "--no-images"]) == 0
    fresh = {r["image"]: r["faces"] for r in results(tmp_path / "fresh")}
    for r in resumed:  # 1 thread per worker against 2 threads: float sums in another order, boxes within 1e-3 px
        assert len(r["faces"]) == len(fresh[r["image"]]), r["image"]
        assert np.allclose([f["box"] for f in r["faces"]], [f["box"] for f in fresh[r["image"]]], atol=1e-3), r["image"]
