"""Loading and saving the networks' weights: safetensors files, checked, without pickle.

The default weights ship in ``facepose/data/`` with ``manifest.json`` recording each file's sha256
(``update_manifest`` writes it, loading checks it). Each file's safetensors metadata records its
architecture (``"arch"``: ``pnet``, ``rnet``, ``onet``, ``fpnet``, ``fpnet_branch`` or ``updown``) and sizes, checked
against the tensors on load; a last-stage file also says whether its rotation head is trained
(``"pose": "trained"``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .nets import ARCHITECTURES, CascadeNets, ONet, PNet, RNet, UpDownNet, create_last_stage

__all__ = ["WEIGHTS_DIR", "MANIFEST", "WeightsError", "load_pnet", "load_rnet", "load_last_stage", "load_updown", "load_cascade",
           "save_net", "sha256_of", "update_manifest"]

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


def update_manifest(folder: Path, names: list[str]) -> Path:
    """Record the sha256 of the files ``names`` of ``folder`` in its ``manifest.json``."""
    path = Path(folder) / MANIFEST.name
    manifest = json.loads(path.read_text()) if path.exists() else {"files": {}}
    for name in names:
        manifest["files"][name] = sha256_of(Path(folder) / name)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


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


def _check_arch(metadata: dict[str, str], expected: str, path: Path) -> None:
    arch = metadata.get("arch", expected)
    if arch != expected:
        raise WeightsError(f"{path} holds a {arch!r} network, not a {expected!r}")


def load_pnet(path: Path | str = WEIGHTS_DIR / "pnet.safetensors") -> PNet:
    state, metadata = _read(Path(path))
    _check_arch(metadata, "pnet", Path(path))
    return _fill(PNet(), state, Path(path))


def load_rnet(path: Path | str = WEIGHTS_DIR / "rnet.safetensors") -> RNet:
    state, metadata = _read(Path(path))
    _check_arch(metadata, "rnet", Path(path))
    return _fill(RNet(), state, Path(path))


def _arch_from_tensors(state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict[str, int]]:
    """For files without ``arch`` metadata: the architecture their tensor names and shapes imply."""
    if "pose_conv.weight" in state and "pose_dense.weight" in state:
        sizes = {"pose_channels": state["pose_conv.weight"].shape[0], "pose_hidden": state["pose_dense.weight"].shape[0]}
        if "pose_early_conv.weight" in state:
            sizes["pose_early"] = state["pose_early_conv.weight"].shape[0]
        return "fpnet_branch", sizes
    if "pose_dense.weight" in state:
        raise WeightsError(f"{path} is an FPNet variant this version does not support (a pose branch without "
                           "its convolution)")
    return ("fpnet" if "rotation.weight" in state else "onet"), {}


def load_last_stage(path: Path | str = WEIGHTS_DIR / "fpnet.safetensors") -> tuple[ONet, bool]:
    """The last stage (``FPNet``, ``FPNetBranch``, or plain ``ONet``) and whether its rotation head is trained.

    The architecture and sizes come from the file's metadata (or, for files written without them, from
    its tensors) and must fit the tensors exactly.
    """
    path = Path(path)
    state, metadata = _read(path)
    if "arch" in metadata:
        arch = metadata["arch"]
        if arch not in ARCHITECTURES:
            raise WeightsError(f"{path} holds a {arch!r} network, not a last stage ({', '.join(sorted(ARCHITECTURES))})")
        try:
            sizes = {k: int(v) for k, v in json.loads(metadata.get("sizes", "{}")).items()}
        except (ValueError, AttributeError):
            raise WeightsError(f"{path} has unreadable architecture sizes in its metadata: {metadata.get('sizes')!r}") from None
    else:
        arch, sizes = _arch_from_tensors(state, path)
    try:
        net = create_last_stage(arch, **sizes)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its metadata names {arch} with sizes {sizes}, which cannot be built ({e})") from None
    _fill(net, state, path)
    return net, net.has_rotation and metadata.get("pose") == "trained"


def load_updown(path: Path | str = WEIGHTS_DIR / "updown.safetensors") -> UpDownNet:
    """The up/down check (``nets.UpDownNet``), in eval mode."""
    state, metadata = _read(Path(path))
    _check_arch(metadata, "updown", Path(path))
    return _fill(UpDownNet(int(metadata.get("width", 16))), state, Path(path)).eval()


def load_cascade(folder: Path | str = WEIGHTS_DIR, fpnet: Path | str | None = None) -> tuple[CascadeNets, bool]:
    """``pnet``, ``rnet``, ``fpnet`` and, where the folder has it, ``updown.safetensors`` of ``folder`` (``fpnet``
    may come from elsewhere), and whether the last stage's pose is trained. The up/down check serves a last
    stage with an orientation head only."""
    folder = Path(folder)
    last, pose = load_last_stage(fpnet if fpnet is not None else folder / "fpnet.safetensors")
    updown = folder / "updown.safetensors"
    checks = load_updown(updown) if updown.is_file() and getattr(last, "has_orientation", False) else None
    return CascadeNets(load_pnet(folder / "pnet.safetensors"), load_rnet(folder / "rnet.safetensors"), last, checks), pose


def save_net(net: nn.Module, path: Path | str, metadata: dict | None = None) -> Path:
    """Write a network's weights as safetensors (CPU, contiguous) with its architecture and sizes in the
    metadata; ``metadata`` values become strings. For a last stage, ``{"pose": "trained"}`` marks a
    trained rotation head."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    if hasattr(net, "arch"):
        meta["arch"] = net.arch
    if isinstance(net, ONet):
        meta["sizes"] = json.dumps(net.sizes(), sort_keys=True)
    if isinstance(net, UpDownNet):
        meta["width"] = str(net.width)
    save_file(state, str(path), metadata=meta)
    return Path(path)
