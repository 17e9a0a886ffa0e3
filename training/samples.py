"""The FPNet data set in memory: shards from ``build_dataset``, mirroring, and balanced epochs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facepose.rotation import matrix_to_sixd, mirror_matrix, sixd_to_matrix

__all__ = ["KIND", "Samples", "require_data_sets", "made_by", "load_samples", "load_turned", "mirror_batch", "epoch_indices"]

# what a sample is, by IoU of its crop's box with the nearest true face (see build_dataset)
KIND = {"negative": 0, "positive": 1, "part": 2, "inside": 3}


@dataclass
class Samples:
    crops: torch.Tensor  # (N, 48, 48, 3) uint8
    kind: torch.Tensor  # (N,) int8, see KIND
    box: torch.Tensor  # (N, 4) regression targets
    sixd: torch.Tensor  # (N, 6) teacher rotation, 6D
    angles: torch.Tensor  # (N, 3) teacher yaw, pitch, roll (nan without pose)
    has_pose: torch.Tensor  # (N,) bool
    context: torch.Tensor | None = None  # (N, S, S, 3) uint8: the same boxes grown (build_dataset.CONTEXT), if built

    def __len__(self) -> int:
        return len(self.kind)

    def subset(self, idx: torch.Tensor) -> Samples:
        return Samples(*(None if getattr(self, f) is None else getattr(self, f)[idx] for f in self.__dataclass_fields__))


def require_data_sets(folders: list[Path], made_by: str = "training.build_dataset") -> None:
    """Stops the command with a message naming the first of ``folders`` that is not a data set (no ``manifest.json``)
    and the command ``made_by`` that makes one."""
    for folder in folders:
        if not (Path(folder) / "manifest.json").is_file():
            raise SystemExit(f"{folder} is not a data set (no manifest.json): run python -m {made_by} first")


def made_by(folder: Path | str) -> str:
    """The command that made the data set in ``folder`` (its manifest's ``made_by``; ``training.build_dataset``
    where the manifest does not say)."""
    return json.loads((Path(folder) / "manifest.json").read_text()).get("made_by", "training.build_dataset")


def load_samples(folders: Path | str | list[Path | str], split: str, real_pose_max_yaw: float = 0.0) -> Samples:
    """All shards of ``split`` ("train" or "val") listed in the ``manifest.json`` of each folder (one data
    set, or several built side by side, e.g. one per source). ``real_pose_max_yaw`` (degrees, 0: off): the faces
    of photos (not of ``training.profile_synthesis``) whose label turns as far as that or further keep no pose."""
    folders = [Path(f) for f in (folders if isinstance(folders, (list, tuple)) else [folders])]
    shards = []  # sorted by name over all folders: one data set built in parts loads as if built at once
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        shards += [(name, folder) for name, info in manifest["shards"].items()
                   if info["split"] == split and info.get("samples", 0) > 0]
    parts = []
    for name, folder in sorted(shards):
        with np.load(folder / "shards" / f"{name}.npz") as z:
            part = {k: z[k] for k in Samples.__dataclass_fields__ if k in z.files}
        if real_pose_max_yaw and made_by(folder) != "training.profile_synthesis":
            with np.errstate(invalid="ignore"):  # nan angles: no pose already
                part["has_pose"] = part["has_pose"] & (np.abs(part["angles"][:, 0]) < real_pose_max_yaw)
        parts.append(part)
    if not parts:
        raise FileNotFoundError(f"no {split} shards in {', '.join(map(str, folders))}; run python -m training.build_dataset first")
    keys = set.intersection(*(set(p) for p in parts))  # context crops only where every shard has them
    cat = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    return Samples(*(torch.from_numpy(cat[f]) if f in cat else None for f in Samples.__dataclass_fields__))


def load_turned(folders: Path | str | list[Path | str], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The crops the cascade proposes on turned faces (``training.turned_proposals``) of ``split`` in each data set
    folder made by ``training.build_dataset`` (those of ``training.profile_synthesis`` have none): ``(N, 48, 48, 3)``
    uint8 crops and ``(N,)`` leans in degrees."""
    folders = [Path(f) for f in (folders if isinstance(folders, (list, tuple)) else [folders])]
    crops, leans = [], []
    for folder in folders:
        if made_by(folder) == "training.profile_synthesis":
            continue  # faces made from other faces' crops: no photos to turn
        path = folder / "turned" / f"{split}.npz"
        if not path.exists():
            raise FileNotFoundError(f"no {path}: run python -m training.turned_proposals --data {folder} first")
        with np.load(path) as z:
            crops.append(z["crops"])
            leans.append(z["lean"])
    return torch.from_numpy(np.concatenate(crops)), torch.from_numpy(np.concatenate(leans))


def mirror_batch(crops: torch.Tensor, box: torch.Tensor, sixd: torch.Tensor,
                 flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror the samples where ``flip`` (N,) is true: crops ``(N, 3, 48, 48)``, box offsets ``(N, 4)``
    (x1 and x2 swap and change sign), rotations ``(N, 6)`` (yaw and roll change sign)."""
    if not flip.any():
        return crops, box, sixd
    f = flip[:, None]
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    box = torch.where(f, torch.stack((-box[:, 2], box[:, 1], -box[:, 0], box[:, 3]), 1), box)
    sixd = torch.where(f, matrix_to_sixd(mirror_matrix(sixd_to_matrix(sixd))), sixd)
    return crops, box, sixd


def epoch_indices(samples: Samples, generator: torch.Generator, negatives_per_positive: float = 1.5,
                  inside_share: float = 1 / 3) -> torch.Tensor:
    """One epoch: every positive and part face, and negatives (``negatives_per_positive`` per positive)
    drawn outside and inside faces at ``1 - inside_share : inside_share`` (2:1 by default), shuffled."""
    k = samples.kind
    pos = torch.nonzero((k == KIND["positive"]) | (k == KIND["part"])).flatten()
    n_pos = int((k == KIND["positive"]).sum())
    n_neg = int(n_pos * negatives_per_positive)
    picks = [pos]
    for kind, share in (("negative", 1 - inside_share), ("inside", inside_share)):
        pool = torch.nonzero(k == KIND[kind]).flatten()
        want = int(round(n_neg * share))
        if len(pool) and want:
            picks.append(pool[torch.randint(len(pool), (want,), generator=generator)] if want > len(pool)
                         else pool[torch.randperm(len(pool), generator=generator)[:want]])
    idx = torch.cat(picks)
    return idx[torch.randperm(len(idx), generator=generator)]
