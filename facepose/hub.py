"""Saving and loading detectors as folders of safetensors plus ``config.json``, locally or on the Hugging
Face Hub (``huggingface_hub`` is needed for the Hub only).

A folder holds one ``NAME.safetensors`` per network of ``CascadeNets`` (``pnet``, ``rnet``, ``fpnet`` and, optional,
``updown``), their
ONNX exports ``NAME.onnx`` (when the ``onnx`` package is installed; see ``onnx_backend``) and
``config.json`` with the ``DetectorConfig`` fields. ``FacePoseDetector.save_pretrained`` and
``from_pretrained`` call these functions.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .config import DetectorConfig
from .nets import REQUIRED_NETS, CascadeNets
from .weights import save_net

__all__ = ["NETWORK_FILES", "CONFIG_FILE", "HubError", "save_pretrained", "write_config", "resolve", "read_config", "push_to_hub"]

NETWORK_FILES = {name: f"{name}.safetensors" for name in CascadeNets._fields}
CONFIG_FILE = "config.json"


class HubError(RuntimeError):
    """A pretrained detector could not be found or fetched; the message says why."""


def save_pretrained(folder: str | Path, nets: CascadeNets, config: DetectorConfig, pose_available: bool) -> Path:
    """Write each network of ``nets`` (``updown`` where it has one) to ``folder/NAME.safetensors`` and ``config``
    to ``config.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, net in nets._asdict().items():
        if net is None:  # a detector without the up/down check
            continue
        meta = {"pose": "trained" if pose_available else "untrained"} if name == "fpnet" else None
        save_net(net, folder / NETWORK_FILES[name], meta)
    try:
        import onnx  # noqa: F401 (the export is checked with it)
    except ImportError:
        pass
    else:
        from .onnx_backend import export_onnx

        export_onnx(nets, folder, pose_available)
    write_config(folder, config, pose_available)
    return folder


def write_config(folder: str | Path, config: DetectorConfig, pose_available: bool) -> Path:
    """``folder/config.json``: the FacePose version, whether the pose is trained, and the settings."""
    data = {"facepose_version": __version__, "pose_available": pose_available, **config.to_dict()}
    path = Path(folder) / CONFIG_FILE
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _fetch(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubError(f"'{repo_id}' is not a local folder, and loading from the Hub needs: pip install 'facepose[hub]'") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[*NETWORK_FILES.values(), CONFIG_FILE, "*.onnx"]))
    except Exception as e:  # offline mode, no network, unknown repo, missing token
        why = "HF_HUB_OFFLINE is set and it is not in the local Hub cache" if offline else f"{type(e).__name__}: {e}"
        raise HubError(f"cannot load '{repo_id}': no such local folder, and the Hub download failed ({why})") from None


def resolve(repo_id_or_dir: str | Path) -> Path:
    """The local folder of a saved detector: ``repo_id_or_dir`` itself, or a Hub repo "owner/name" fetched
    into the Hub cache. Raises ``HubError`` when it is neither, or lacks a file."""
    folder = Path(repo_id_or_dir)
    if not folder.is_dir():
        if str(repo_id_or_dir).count("/") != 1 or str(repo_id_or_dir).startswith((".", "/")):
            raise HubError(f"'{repo_id_or_dir}' is neither a folder nor a Hub repo id of the form 'owner/name'")
        folder = _fetch(str(repo_id_or_dir))
    missing = [f for f in (*(NETWORK_FILES[name] for name in REQUIRED_NETS), CONFIG_FILE) if not (folder / f).is_file()]
    if missing:
        raise HubError(f"{folder} lacks {', '.join(missing)}: not a FacePose model folder")
    return folder


def read_config(folder: str | Path) -> DetectorConfig:
    """The ``DetectorConfig`` saved in ``folder/config.json`` (validated)."""
    path = Path(folder) / CONFIG_FILE
    try:
        return DetectorConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise HubError(f"{path} is not a valid FacePose config ({e})") from None


def push_to_hub(save: Callable[[Path], Path], repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload FacePose detector") -> str:
    """Call ``save(folder)`` on a temporary folder and upload it to the Hub model repo ``repo_id``."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HubError("pushing to the Hub needs: pip install 'facepose[hub]'") from None
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp))
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=commit_message)
    return str(info)
