"""Weights load from safetensors, are checked against the manifest, and fail clearly."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import save_file

from facepose import FacePoseDetector, WeightsError
from facepose import weights as W
from facepose.nets import FPNet, PNet


def test_manifest_matches_packaged_files():
    manifest = json.loads(W.MANIFEST.read_text())["files"]
    assert {"pnet.safetensors", "rnet.safetensors", "onet.safetensors", "fpnet.safetensors"} <= set(manifest)
    for name, digest in manifest.items():
        assert W.sha256_of(W.WEIGHTS_DIR / name) == digest


def test_fpnet_shares_onet_weights():
    fpnet, _ = W.load_fpnet()
    onet, pose = W.load_fpnet(W.WEIGHTS_DIR / "onet.safetensors")
    assert onet.rotation is None and not pose
    for name, tensor in onet.state_dict().items():
        assert name in fpnet.state_dict()
    assert sum(t.numel() * 4 for t in fpnet.state_dict().values()) < 2_000_000  # FPNet under 2 MB


def test_corrupt_packaged_file_is_detected(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    shutil.copytree(W.WEIGHTS_DIR, folder)
    data = bytearray((folder / "pnet.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "pnet.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(W, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(W, "MANIFEST", folder / "manifest.json")
    with pytest.raises(WeightsError, match="pnet.safetensors is corrupt"):
        W.load_pnet(folder / "pnet.safetensors")


def test_missing_and_wrong_weights(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        FacePoseDetector(weights=tmp_path / "nothing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        FacePoseDetector(weights=garbage)
    wrong = tmp_path / "pnet_as_fpnet.safetensors"
    save_file(PNet().state_dict(), str(wrong))
    with pytest.raises(WeightsError, match="does not fit FPNet"):
        FacePoseDetector(weights=wrong)


def test_pose_flag_comes_from_metadata(tmp_path):
    path = tmp_path / "fp.safetensors"
    save_file(FPNet().state_dict(), str(path), metadata={"pose": "trained"})
    assert FacePoseDetector(weights=path).pose_available
