"""save_pretrained / from_pretrained through a local folder; the Hub path fails clearly offline."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from facepose import DetectorConfig, FacePoseDetector, WeightsError
from facepose.hub import HubError

from .conftest import PHOTOS, REPO, needs_photos


@needs_photos
def test_round_trip_through_a_folder(tmp_path):
    """Every setting survives save_pretrained / from_pretrained, and so do the networks and their faces."""
    config = DetectorConfig(min_face_size=30, pnet_threshold=0.5, rnet_threshold=0.65, fpnet_threshold=0.8, pnet_nms=0.4,
                            pnet_merge_nms=0.6, rnet_nms=0.65, fpnet_nms=0.75,
                            factor=0.65, max_pixels=12_000_000, flip_pose=False)
    original = FacePoseDetector(config=config)
    folder = original.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".onnx") == \
        ["config.json", "fpnet.safetensors", "pnet.safetensors", "rnet.safetensors", "updown.safetensors"]
    saved = json.loads((folder / "config.json").read_text())
    assert saved["min_face_size"] == 30 and saved["fpnet_threshold"] == 0.8
    loaded = FacePoseDetector.from_pretrained(folder)
    assert loaded.config == config
    assert loaded.pose_available == original.pose_available
    for name in ("pnet", "rnet", "fpnet", "updown"):
        a, b = getattr(original.nets, name).state_dict(), getattr(loaded.nets, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert FacePoseDetector.from_pretrained(folder, min_face_size=40).config == config.replace(min_face_size=40)
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


def test_each_network_is_written_to_its_own_file(tmp_path):
    """Files are written by network name: swapping two networks' files is caught on load."""
    folder = FacePoseDetector().save_pretrained(tmp_path / "model")
    (folder / "pnet.safetensors").rename(tmp_path / "p")
    (folder / "rnet.safetensors").rename(folder / "pnet.safetensors")
    (tmp_path / "p").rename(folder / "rnet.safetensors")
    with pytest.raises(WeightsError, match="holds a 'rnet' network, not a 'pnet'"):
        FacePoseDetector.from_pretrained(folder)


def test_invalid_saved_config_is_refused(tmp_path):
    folder = FacePoseDetector().save_pretrained(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "min_face_size": 3}))
    with pytest.raises(HubError, match="config.json is not a valid FacePose config.*min_face_size"):
        FacePoseDetector.from_pretrained(folder)
