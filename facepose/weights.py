"""Loading the networks' weights: safetensors files, checked, without pickle.

The default weights ship in ``facepose/data/`` with ``manifest.json`` recording each file's sha256.
An FPNet file's safetensors metadata says whether its rotation head is trained (``"pose": "trained"``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .nets import FPNet, PNet, RNet

__all__ = ["WEIGHTS_DIR", "WeightsError", "load_pnet", "load_rnet", "load_fpnet", "save_net", "sha256_of"]

WEIGHTS_DIR = Path(__file__).parent / "data"
MANIFEST = WEIGHTS_DIR / "manifest.json"


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not fit the network."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_sha256(path: Path) -> str | None:
    """The manifest's sha256 for a file of the packaged weights folder, None for any other file."""
    if path.resolve().parent != WEIGHTS_DIR.resolve() or not MANIFEST.is_file():
        return None
    return json.loads(MANIFEST.read_text())["files"].get(path.name)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    expected = _expected_sha256(path)
    if expected is not None and sha256_of(path) != expected:
        raise WeightsError(
            f"weights file {path} is corrupt: its sha256 differs from the one in {MANIFEST.name}; "
            "reinstall facepose"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None


def _fill(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise WeightsError(f"{path} does not fit {type(module).__name__}: {' '.join(first)}") from None
    return module.eval()


def load_pnet(path: Path | str = WEIGHTS_DIR / "pnet.safetensors") -> PNet:
    state, _ = _read(Path(path))
    return _fill(PNet(), state, Path(path))


def load_rnet(path: Path | str = WEIGHTS_DIR / "rnet.safetensors") -> RNet:
    state, _ = _read(Path(path))
    return _fill(RNet(), state, Path(path))


def load_fpnet(path: Path | str = WEIGHTS_DIR / "fpnet.safetensors") -> tuple[FPNet, bool]:
    """FPNet (or plain O-Net, a file without rotation head) and whether its pose head is trained."""
    state, metadata = _read(Path(path))
    has_head = "rotation.weight" in state
    hidden = state["pose_dense.weight"].shape[0] if "pose_dense.weight" in state else 0
    channels = state["pose_conv.weight"].shape[0] if "pose_conv.weight" in state else 0
    net = _fill(FPNet(pose_head=has_head, pose_hidden=hidden, pose_channels=channels), state, Path(path))
    return net, has_head and metadata.get("pose") == "trained"


def save_net(net: nn.Module, path: Path | str, metadata: dict | None = None) -> Path:
    """Write a network's weights as safetensors (CPU, contiguous); ``metadata`` values become strings.
    For FPNet, ``{"pose": "trained"}`` marks a trained rotation head."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return Path(path)
