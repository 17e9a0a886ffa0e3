"""save_pretrained / from_pretrained through a local folder; the Hub path fails clearly offline."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from facepose import FacePoseDetector
from facepose.hub import HubError

from .conftest import PHOTOS, REPO, needs_photos


@needs_photos
def test_round_trip_through_a_folder(tmp_path):
    original = FacePoseDetector(min_face_size=30, thresholds=(0.6, 0.7, 0.8))
    folder = original.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fpnet.safetensors", "pnet.safetensors", "rnet.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["min_face_size"] == 30 and config["thresholds"] == [0.6, 0.7, 0.8]
    loaded = FacePoseDetector.from_pretrained(folder)
    assert loaded.min_face_size == 30 and loaded.thresholds == (0.6, 0.7, 0.8)
    assert loaded.pose_available == original.pose_available
    photo = PHOTOS / "nasa_iss_expedition_1.jpg"
    assert [f.box for f in loaded.detect(photo)] == [f.box for f in original.detect(photo)]


def test_incomplete_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(HubError, match="lacks pnet.safetensors"):
        FacePoseDetector.from_pretrained(tmp_path)


def test_offline_hub_download_fails_clearly():
    code = (
        "from facepose import FacePoseDetector\n"
        "try:\n    FacePoseDetector.from_pretrained('facepose-test/does-not-exist')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(REPO / ".pytest_cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert "HubError" in out.stdout and "HF_HUB_OFFLINE" in out.stdout, out.stdout + out.stderr


def test_not_a_repo_id():
    with pytest.raises(HubError, match="neither a folder nor a Hub repo id"):
        FacePoseDetector.from_pretrained("./no/such/folder/here")
