"""The crops the cascade really proposes on turned faces, for FPNet's orientation head.

    python -m training.turned_proposals [--data DIR ...] [--turns 3] [--limit N] [--seed 0] [--threads N]

The orientation head tells how far a face leans in its crop. Turning a data set's crops teaches it faces
boxed as P-Net and R-Net box upright faces; on a face turned far from upright (upside down most of all)
their boxes sit further off the face, shifted along it by up to 0.45 of their side, and the head then reads
some upside-down faces as upright. So, as the data set itself was made from the crops R-Net proposes, this
command runs the cascade on every AFLW photo of each data set (``build_dataset`` after ``landmark_pose``),
turned in the image plane by ``--turns`` random angles in turn, and keeps, for the face in each:

- up to ``PER_FACE`` of R-Net's proposals on it that O-Net scores as a face (what the head reads first);
- O-Net's box of the best of them, squared and cut turned back by the face's lean give or take
  ``RECUT_NOISE`` (what the head reads when the cascade cuts a leaning face again, ``cascade.upright_pose``).

Each crop's label is the lean of the face's rotation label (the data set's) turned with the picture and the
crop (``rotation.in_plane_angle`` of ``Rz(angle) R``). The split is the data set's (by photo). Writes
``DIR/turned/train.npz`` and ``DIR/turned/val.npz``: ``crops (N, 48, 48, 3)`` uint8, ``lean (N,)`` degrees,
``face_key (N,)``. ``train`` mixes them into the orientation head's batches (``Recipe.proposals``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facepose.boxes import square
from facepose.cascade import decode_last_stage, run_cascade
from facepose.config import DetectorConfig
from facepose.crops import crops_to_uint8, turned_crops
from facepose.nets import CascadeNets
from facepose.rotation import in_plane_angle, sixd_to_matrix, turn_rotations
from facepose.weights import WEIGHTS_DIR, load_last_stage, load_pnet, load_rnet
from support.paths import AFLW_FACES, AFLW_FACES_EXTRA

from . import sources
from .build_dataset import face_from_teacher_box, is_validation
from .samples import require_data_sets

__all__ = ["turned_picture", "turned_box", "face_labels", "main"]
PER_FACE = 3  # R-Net proposals kept per face
FACE_SCORE = 0.5  # O-Net's score a proposal needs (the cascade keeps faces above 0.7)
RECUT_NOISE = 10.0  # degrees: sigma of the lean error of the crop cut again turned
SOURCES = {"aflw": AFLW_FACES, "aflw_extra": AFLW_FACES_EXTRA}


def turned_picture(pixels: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``pixels`` turned counter-clockwise by ``angle`` degrees (grown to hold the whole picture, black around),
    and the ``(2, 3)`` affine map of original pixel coordinates (x, y) into the turned picture."""
    h, w = pixels.shape[:2]
    if angle % 90 == 0:
        k = int(angle // 90) % 4
        turned = np.ascontiguousarray(np.rot90(pixels, k))  # exact: no resampling
    else:
        turned = np.asarray(Image.fromarray(pixels).rotate(angle, resample=Image.BILINEAR, expand=True))
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    H, W = turned.shape[:2]
    # about the centres, y down: a counter-clockwise turn takes (dx, dy) to (c dx + s dy, -s dx + c dy)
    cx, cy, cX, cY = (w - 1) / 2, (h - 1) / 2, (W - 1) / 2, (H - 1) / 2
    m = np.array([[c, s, cX - c * cx - s * cy], [-s, c, cY + s * cx - c * cy]])
    return turned, m


def turned_box(box: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The axis-aligned box around ``box``'s corners mapped by ``m`` (``turned_picture``)."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]]) @ m.T
    return np.concatenate((corners.min(0), corners.max(0)))


def face_labels(folder: Path) -> dict[str, np.ndarray]:
    """``face_key -> (6,)`` rotation label of every face of the data set in ``folder`` that has one."""
    labels: dict[str, np.ndarray] = {}
    for shard in sorted((folder / "shards").glob("*.npz")):
        with np.load(shard) as z:  # each array read once: indexing the archive reads it again
            keys, sixd, has_pose = z["face_key"], z["sixd"], z["has_pose"]
        for i in np.flatnonzero(has_pose & (keys != "")):
            labels.setdefault(str(keys[i]), sixd[i])
    return labels


def _on_face(boxes: np.ndarray, centre: np.ndarray, side: float) -> np.ndarray:
    """``(N,)`` mask of ``boxes`` centred within 0.3 of ``side`` of ``centre`` and 0.6-1.6 times its size."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1).clip(0))
    return (np.linalg.norm(c - centre, axis=1) < 0.3 * side) & (size > 0.6 * side) & (size < 1.6 * side)


@torch.inference_mode()
def face_crops(nets: CascadeNets, photo: sources.Photo, face: np.ndarray, label: np.ndarray, angle: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The crops of the face ``face (4,)`` (box) of ``photo`` turned counter-clockwise by ``angle`` degrees, and
    their leans (see the module's text); ``label (6,)``: the face's rotation, 6D; ``nets``: MTCNN's, O-Net last.
    Returns ``(K, 48, 48, 3)`` uint8 crops and ``(K,)`` leans in degrees (K = 0 where the cascade misses the face)."""
    pixels, m = turned_picture(photo.pixels, angle)
    centre = m @ np.array([(face[0] + face[2]) / 2, (face[1] + face[3]) / 2, 1.0])
    side = math.sqrt((face[2] - face[0]) * (face[3] - face[1]))
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float()
    boxes, crops = run_cascade(nets, image, DetectorConfig(), until="rnet").last_stage_input()
    empty = np.zeros((0, 48, 48, 3), np.uint8), np.zeros(0, np.float32)
    if not len(boxes):
        return empty
    out = nets.fpnet(crops)
    scores, regressed, _ = decode_last_stage(out, boxes)
    ok = np.flatnonzero(_on_face(boxes.numpy(), centre, side) & (scores.numpy() > FACE_SCORE))
    if not len(ok):
        return empty
    rotation = turn_rotations(sixd_to_matrix(torch.from_numpy(label).double())[None], torch.tensor([angle]).double())
    lean = float(in_plane_angle(rotation)[0])
    kept = rng.choice(ok, min(PER_FACE, len(ok)), replace=False)
    best = ok[int(scores[ok].argmax())]
    turn = lean + float(np.clip(rng.normal(0, RECUT_NOISE), -3 * RECUT_NOISE, 3 * RECUT_NOISE))
    recut, valid = turned_crops(image, square(regressed[best:best + 1]), torch.tensor([turn]), 48)
    leans = [lean] * len(kept)
    parts = [crops_to_uint8(crops[kept] * 128 + 127.5)]
    if bool(valid[0]):
        parts.append(crops_to_uint8(recut))
        leans.append(float(in_plane_angle(turn_rotations(rotation, torch.tensor([turn]).double()))[0]))
    return torch.cat(parts).numpy(), np.array(leans, np.float32)


def build(folder: Path, nets: CascadeNets, turns: int, limit: int | None, seed: int) -> dict[str, int]:
    """``folder/turned/{train,val}.npz`` for the AFLW faces of the data set in ``folder``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    labels = face_labels(folder)
    prefixes = sorted({key.split("/")[0] for key in labels} & set(SOURCES))
    parts: dict[str, list] = {"train": [], "val": []}
    for prefix in prefixes:
        photos = sources.aflw_faces(SOURCES[prefix], prefix=prefix)
        done = 0
        for photo in tqdm(photos, desc=f"{folder.name} {prefix} turned", unit="photo"):
            key = f"{photo.key}#0"
            if key not in labels:
                continue
            face = face_from_teacher_box(photo.teacher_boxes[0], manifest["teacher_box"])
            rng = np.random.default_rng([seed, int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)])
            for _ in range(turns):
                crops, leans = face_crops(nets, photo, face, labels[key], float(rng.uniform(0, 360)), rng)
                if len(crops):
                    parts["val" if is_validation(photo.key) else "train"].append((crops, leans, [key] * len(crops)))
            done += 1
            if limit and done >= limit:
                break
    (folder / "turned").mkdir(exist_ok=True)
    counts = {}
    for split, p in parts.items():
        crops = np.concatenate([c for c, _, _ in p]) if p else np.zeros((0, 48, 48, 3), np.uint8)
        leans = np.concatenate([v for _, v, _ in p]) if p else np.zeros(0, np.float32)
        keys = np.array([k for _, _, ks in p for k in ks], dtype="<U32")
        np.savez(folder / "turned" / f"{split}.npz", crops=crops, lean=leans, face_key=keys)
        counts[split] = len(crops)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", default=[Path("data_cache/fpnet")],
                   help="data set folders (build_dataset --out), each gets a turned/ folder")
    p.add_argument("--turns", type=int, default=3, help="random angles each face is turned by, in turn")
    p.add_argument("--limit", type=int, default=None, help="at most this many faces per source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    require_data_sets(args.data)
    onet, _ = load_last_stage(WEIGHTS_DIR / "onet.safetensors")
    nets = CascadeNets(load_pnet(), load_rnet(), onet.eval())
    for folder in args.data:
        print(f"{folder}: {build(folder, nets, args.turns, args.limit, args.seed)} turned crops (train, val)")


if __name__ == "__main__":
    main()
