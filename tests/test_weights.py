"""Weights load from safetensors, are checked against the manifest, and fail clearly."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from facepose import FacePoseDetector, WeightsError
from facepose import weights as W
from facepose.nets import FPNet, FPNetBranch, ONet, PNet


def test_manifest_matches_packaged_files():
    manifest = json.loads(W.MANIFEST.read_text())["files"]
    assert {"pnet.safetensors", "rnet.safetensors", "onet.safetensors", "fpnet.safetensors"} <= set(manifest)
    for name, digest in manifest.items():
        assert W.sha256_of(W.WEIGHTS_DIR / name) == digest


def test_shipped_fpnet_holds_onet_weights_unchanged():
    """The shipped FPNet is O-Net frozen plus a pose branch: every O-Net tensor is MTCNN's, value for value."""
    fpnet, pose = W.load_last_stage()
    onet, onet_pose = W.load_last_stage(W.WEIGHTS_DIR / "onet.safetensors")
    assert type(onet) is ONet and not onet.has_rotation and not onet_pose
    assert type(fpnet) is FPNetBranch and pose and fpnet.sizes() == {"pose_channels": 64, "pose_hidden": 96, "pose_early": 48,
                                                                           "orient_hidden": 64}
    shipped = fpnet.state_dict()
    for name, tensor in onet.state_dict().items():
        assert torch.equal(shipped[name], tensor), name
    onet_bytes = sum(t.numel() * 4 for t in onet.state_dict().values())
    assert sum(t.numel() * 4 for t in shipped.values()) < onet_bytes + 800_000  # pose branch + orientation head under 0.8 MB


def test_architecture_is_recorded_and_checked(tmp_path):
    """save_net records the architecture and sizes; a file whose metadata disagrees with its tensors, or
    names an unknown network, is refused with a message naming the file."""
    path = W.save_net(FPNetBranch(pose_channels=8, pose_hidden=16), tmp_path / "b.safetensors", {"pose": "trained"})
    net, pose = W.load_last_stage(path)
    assert type(net) is FPNetBranch and net.sizes() == {"pose_channels": 8, "pose_hidden": 16} and pose
    thesis = W.save_net(FPNet(), tmp_path / "t.safetensors")
    assert type(W.load_last_stage(thesis)[0]) is FPNet
    lying = tmp_path / "lying.safetensors"
    save_file(FPNetBranch(8, 16).state_dict(), str(lying), metadata={"arch": "fpnet_branch",
                                                                       "sizes": '{"pose_channels": 8, "pose_hidden": 32}'})
    with pytest.raises(WeightsError, match="lying.safetensors does not fit FPNetBranch"):
        W.load_last_stage(lying)
    alien = tmp_path / "alien.safetensors"
    save_file(ONet().state_dict(), str(alien), metadata={"arch": "resnet50"})
    with pytest.raises(WeightsError, match="'resnet50' network, not a last stage"):
        W.load_last_stage(alien)
    with pytest.raises(WeightsError, match="holds a 'fpnet_branch' network, not a 'pnet'"):
        W.load_pnet(path)


def test_files_without_metadata_load_by_their_tensors(tmp_path):
    """Weights saved by other tools (plain state dicts) still load: the tensors tell the architecture."""
    for net in (ONet(), FPNet(), FPNetBranch(4, 8)):
        path = tmp_path / f"{net.arch}.safetensors"
        save_file(net.state_dict(), str(path))
        loaded, pose = W.load_last_stage(path)
        assert type(loaded) is type(net) and not pose


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
    with pytest.raises(WeightsError, match="does not fit ONet"):
        FacePoseDetector(weights=wrong)


def test_pose_flag_comes_from_metadata(tmp_path):
    path = tmp_path / "fp.safetensors"
    save_file(FPNet().state_dict(), str(path), metadata={"pose": "trained"})
    assert FacePoseDetector(weights=path).pose_available
