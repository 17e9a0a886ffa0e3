"""Saving and loading detectors as folders of safetensors plus ``config.json``, locally or on the Hugging
Face Hub (``huggingface_hub`` is needed for the Hub only)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import __version__
from .detector import SETTINGS
from .weights import save_net

__all__ = ["load_pretrained", "save_pretrained", "push_to_hub", "HubError"]

FILES = ("pnet.safetensors", "rnet.safetensors", "fpnet.safetensors", "config.json")


class HubError(RuntimeError):
    """A pretrained detector could not be found or fetched; the message says why."""


def save_pretrained(detector, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pose = "trained" if detector.pose_available else "untrained"
    for name, net in zip(FILES, detector.nets):
        save_net(net, folder / name, {"pose": pose} if name.startswith("fpnet") else None)
    config = {"facepose_version": __version__, "pose_available": detector.pose_available, **detector.config()}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def _fetch(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubError(f"'{repo_id}' is not a local folder, and loading from the Hub needs: pip install huggingface_hub") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(FILES)))
    except Exception as e:  # offline mode, no network, unknown repo, missing token
        why = "HF_HUB_OFFLINE is set and it is not in the local Hub cache" if offline else f"{type(e).__name__}: {e}"
        raise HubError(f"cannot load '{repo_id}': no such local folder, and the Hub download failed ({why})") from None


def load_pretrained(cls, repo_id_or_dir: str | Path, device: str = "cpu", **overrides):
    folder = Path(repo_id_or_dir)
    if not folder.is_dir():
        if str(repo_id_or_dir).count("/") != 1 or str(repo_id_or_dir).startswith((".", "/")):
            raise HubError(f"'{repo_id_or_dir}' is neither a folder nor a Hub repo id of the form 'owner/name'")
        folder = _fetch(str(repo_id_or_dir))
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise HubError(f"{folder} lacks {', '.join(missing)}: not a FacePose model folder")
    config = json.loads((folder / "config.json").read_text())
    kwargs = {k: config[k] for k in SETTINGS if k in config}
    kwargs.update(overrides)
    return cls(weights_dir=folder, device=device, **kwargs)


def push_to_hub(detector, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload FacePose detector") -> str:
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HubError("pushing to the Hub needs: pip install huggingface_hub") from None
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(detector, tmp)
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=commit_message)
    return str(info)
