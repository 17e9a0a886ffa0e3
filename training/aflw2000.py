"""AFLW2000-3D, the pose benchmark (evaluation only, never training): labels, boxes, teacher crops."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

__all__ = ["Sample", "load_aflw2000", "hopenet_box", "teacher_box", "crop_square"]

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aflw2000"


@dataclass
class Sample:
    image: Path
    yaw: float
    pitch: float
    roll: float
    landmarks: np.ndarray  # (K, 2) visible AFLW 21-point landmarks (pt2d), image pixels

    @property
    def angles(self) -> np.ndarray:
        return np.array([self.yaw, self.pitch, self.roll])


def load_aflw2000(root: Path | str = DEFAULT_ROOT, standard: bool = True) -> list[Sample]:
    """The labelled faces, in file order; ``standard`` keeps the usual 1969 (all angles within 99 deg)."""
    root = Path(root)
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(f"AFLW2000 not found: {root}/labels.csv")
    samples = []
    with open(root / "labels.csv") as f:
        for row in csv.DictReader(f):
            if standard and row["in_standard_1969_subset"] != "1":
                continue
            image = root / "images" / row["image"]
            pt2d = sio.loadmat(image.with_suffix(".mat"))["pt2d"]
            visible = (pt2d[0] >= 0) & (pt2d[1] >= 0)  # -1 marks an invisible landmark
            samples.append(Sample(image, float(row["yaw_deg"]), float(row["pitch_deg"]), float(row["roll_deg"]),
                                  pt2d[:, visible].T.astype(np.float64)))
    return samples


def hopenet_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """Hopenet's AFLW2000 crop: the landmarks' box grown 0.4 of its width left and right, 0.4 of its
    height above and 0.12 below (each side measured on the box as already grown, as Hopenet's code does)."""
    x_min, y_min = landmarks.min(0)
    x_max, y_max = landmarks.max(0)
    k = 0.2
    x_min -= 2 * k * abs(x_max - x_min)
    y_min -= 2 * k * abs(y_max - y_min)
    x_max += 2 * k * abs(x_max - x_min)
    y_max += 0.6 * k * abs(y_max - y_min)
    return float(x_min), float(y_min), float(x_max), float(y_max)


def teacher_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The benchmark crop for the teacher: the landmarks' box grown by 0.4 of its width left and right,
    0.4 of its height above and 0.12 below, every margin measured on the landmarks' box (not squared).
    With it the WHENet port measures yaw 5.11 / pitch 6.30 / roll 4.76 (the published protocol's numbers);
    with ``hopenet_box`` (margins on the growing box, as Hopenet's code does) 5.38 / 6.44 / 4.87."""
    x_min, y_min = landmarks.min(0)
    x_max, y_max = landmarks.max(0)
    w, h = x_max - x_min, y_max - y_min
    return float(x_min - 0.4 * w), float(y_min - 0.4 * h), float(x_max + 0.4 * w), float(y_max + 0.12 * h)


def crop_square(image: Image.Image, box: tuple[float, float, float, float], size: int = 224) -> np.ndarray:
    """``box`` cut out (black outside the image) and resized to ``size x size``: ``(size, size, 3)`` uint8."""
    return np.asarray(image.convert("RGB").crop(tuple(int(round(v)) for v in box)).resize((size, size), Image.BILINEAR))
