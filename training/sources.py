"""Photo sources for the FPNet data set: AFLW face crops, WIDER FACE layout, CelebA layout.

Each source yields ``Photo``s: an RGB array, the true face boxes, and for faces with known landmarks
the box the teacher should see. Never point a source at AFLW2000 or WIDER FACE val (evaluation data).
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facepose.image import ImageError, load_image
from support.paths import AFLW_FACES, WIDER_TRAIN

from .aflw2000 import teacher_box

__all__ = ["Photo", "aflw_faces", "wider_face", "celeba", "read_wider_boxes", "small_faces"]


@dataclass
class Photo:
    key: str  # unique id, used for caching and the train/val split
    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (F, 4) true faces, x1 y1 x2 y2
    teacher_boxes: list = field(default_factory=list)  # per face: the teacher's crop box (aflw2000.teacher_box), or None
    ignore: np.ndarray | None = None  # (F,) bool: faces too small/invalid to learn from


def aflw_faces(root: Path | str = AFLW_FACES, margin: int = 40, limit: int | None = None,
               prefix: str = "aflw") -> Iterator[Photo]:
    """AFLW face crops (120x120, one face each) on a canvas grown by ``margin`` pixels of edge
    replication, so the cascade sees the face whole. The face box is unknown (``boxes`` is empty and
    filled in by the builder from O-Net or the landmarks); the teacher's box comes from the visible
    landmarks as in the AFLW2000 protocol."""
    root = Path(root)
    with open(root / "faces.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows[:limit]:
        try:
            pixels = load_image(root / "images" / row["image"])
        except ImageError:
            continue
        pts = np.array([[float(row[f"x{k}"]), float(row[f"y{k}"])] for k in range(1, 22) if row[f"x{k}"]])
        if len(pts) < 3:
            continue
        padded = np.pad(pixels, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
        box = np.array(teacher_box(pts)) + margin
        yield Photo(f"{prefix}/{row['image']}", padded, np.zeros((0, 4)), [tuple(box)], None)


def small_faces(boxes: np.ndarray, min_face: float) -> np.ndarray:
    """``(F, 4)`` boxes -> ``(F,)`` bool: faces whose shorter side is under ``min_face`` pixels, too small to
    learn from or to count in evaluation (neither positives nor negatives)."""
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < min_face


def read_wider_boxes(gt_file: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """WIDER FACE ground truth: image path -> (boxes (F, 4) x1 y1 x2 y2, invalid flags (F,))."""
    lines = Path(gt_file).read_text().split("\n")
    out, i = {}, 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, lines[i + 2 + k].split()[:10])) for k in range(max(count, 1))]
        i += 2 + max(count, 1)
        a = np.array(rows[:count], dtype=np.float64).reshape(-1, 10)
        boxes = np.stack([a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]], axis=1)
        out[name] = (boxes, a[:, 7] > 0)
    return out


def wider_face(root: Path | str = WIDER_TRAIN, gt_name: str | None = None, min_face: float = 20,
               limit: int | None = None) -> Iterator[Photo]:
    """A folder in WIDER FACE layout (``images/`` plus ``wider_face_*_bbx_gt.txt``). Faces smaller than
    ``min_face`` pixels or marked invalid are kept as ``ignore`` (not negatives, not positives)."""
    root = Path(root)
    gt_file = root / gt_name if gt_name else next(root.glob("wider_face_*_bbx_gt.txt"))
    for name, (boxes, invalid) in list(read_wider_boxes(gt_file).items())[:limit]:
        try:
            pixels = load_image(root / "images" / name)
        except ImageError:
            continue
        yield Photo(f"wider/{name}", pixels, boxes, [None] * len(boxes), invalid | small_faces(boxes, min_face))


def celeba(root: Path | str, limit: int | None = None) -> Iterator[Photo]:
    """A folder in CelebA layout: ``list_bbox_celeba.txt`` (count, header, then ``image x y w h``) and the
    images in ``img_celeba/`` (or next to the list)."""
    root = Path(root)
    lines = (root / "list_bbox_celeba.txt").read_text().split("\n")[2:]
    folder = root / "img_celeba" if (root / "img_celeba").is_dir() else root
    for line in [ln for ln in lines if ln.strip()][:limit]:
        name, *xywh = line.split()
        x, y, w, h = map(float, xywh)
        try:
            pixels = load_image(folder / name)
        except ImageError:
            continue
        yield Photo(f"celeba/{name}", pixels, np.array([[x, y, x + w, y + h]]), [None], np.zeros(1, bool))
